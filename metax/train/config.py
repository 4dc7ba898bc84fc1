"""Configuration of a sinusoid meta-training run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

ALGOS = ("maml", "fomaml", "maml++", "reptile", "pretrain")


@dataclasses.dataclass(frozen=True)
class SinusoidConfig:
    """Hyperparameters of ``metax train sinusoid``; defaults follow Finn et al. (2017).

    Attributes:
      algo: one of ``maml``, ``fomaml``, ``maml++``, ``reptile``, ``pretrain``
        (the non-meta baseline).
      shots: support points per task (K).
      queries: query points per training task (default: ``shots``).
      inner_steps: inner steps during meta-training.
      inner_lr: inner learning rate (MAML++: the initial learned rate).
      outer_lr: Adam learning rate of the meta-update (MAML++: cosine-annealed).
      meta_batch: tasks per meta-step.
      steps: meta-steps in all.
      hidden: hidden layer widths of the MLP.
      seed: seed of initialisation and task sampling.
      log_every: meta-steps between logged losses.
      eval_every: meta-steps between quick validations (100 tasks); 0 disables.
      checkpoint_every: meta-steps between checkpoints.
      eval_tasks: test tasks of the final evaluation.
      eval_steps: fine-tuning steps of the final evaluation (MSE after each).
      eval_queries: query points per test task.
      eval_seed: seed of the test tasks (the same for every algorithm).
      steps_per_epoch: meta-steps per "epoch" for MAML++'s annealing schedules.
      msl_anneal_epochs: epochs over which MAML++'s multi-step loss moves to the last step.
      first_order_epochs: MAML++'s derivative-order annealing: first-order epochs.
    """

    algo: str = "maml"
    shots: int = 10
    queries: int | None = None
    inner_steps: int = 1
    inner_lr: float = 0.01
    outer_lr: float = 1e-3
    meta_batch: int = 25
    steps: int = 70_000
    hidden: tuple[int, ...] = (40, 40)
    seed: int = 0
    log_every: int = 100
    eval_every: int = 5_000
    checkpoint_every: int = 5_000
    eval_tasks: int = 600
    eval_steps: int = 10
    eval_queries: int = 100
    eval_seed: int = 1234
    steps_per_epoch: int = 1_000
    msl_anneal_epochs: int = 10
    first_order_epochs: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        self.validate()

    def validate(self) -> None:
        """Raises a ValueError naming the first bad value."""
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {', '.join(ALGOS)}.")
        positive = [
            "shots",
            "inner_steps",
            "meta_batch",
            "steps",
            "log_every",
            "checkpoint_every",
            "eval_tasks",
            "eval_steps",
            "eval_queries",
            "steps_per_epoch",
            "msl_anneal_epochs",
        ]
        if self.queries is not None:
            positive.append("queries")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("eval_every", "first_order_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        for name in ("inner_lr", "outer_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
        if not self.hidden or any(not isinstance(w, int) or w < 1 for w in self.hidden):
            raise ValueError(
                f"hidden must be a non-empty list of positive widths, got {self.hidden!r}."
            )

    def to_json(self) -> str:
        """Serialises the config (written as ``config.json`` in the run directory)."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> SinusoidConfig:
        """Reads a ``config.json`` written by :meth:`to_json`."""
        return load_config(cls, path)


def load_config(cls, path: str | Path):
    """Reads a run's ``config.json`` into the dataclass ``cls``, naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run configuration at {path} (is this a metax run directory?)")
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt run configuration {path}: {e}") from e
    unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} in {path}")
    return cls(**fields)
