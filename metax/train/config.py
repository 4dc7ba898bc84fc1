"""Run configurations: a base with the fields every family shares, subclassed per family.

Fields are documented in the ``Attributes`` sections, which the CLI's ``--help`` reads.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import re
import typing
from pathlib import Path
from typing import Any, ClassVar

from metax.train.algorithms import ALGORITHMS

# Fields that may be 0 (0 disables); every other int field must be >= 1.
NON_NEGATIVE = ("eval_every", "first_order_epochs")
ANY_INT = ("seed", "eval_seed")
DAMPINGS = ("cg_damping", "lam_damping")  # floats that may be 0
OUTER_DECAYS = ("auto", "constant", "cosine")
# What a resumed run may change: how far it goes, how it is logged, checked, evaluated and
# laid out on the hardware, and where its data are; never what the meta-steps compute.
RESUME_MAY_CHANGE = (
    "steps", "log_every", "eval_every", "checkpoint_every", "val_tasks", "test_tasks",
    "eval_inner_steps", "eval_queries", "chunk_size", "devices", "data",
)  # fmt: skip
# What evaluating a saved run (`metax eval`, `metax.train.load`) may change: how it is tested.
EVAL_MAY_CHANGE = ("test_tasks", "eval_inner_steps", "eval_queries", "data")
# Renamed fields of configs written by metax 0.1, converted on load.
LEGACY_NAMES = {
    "eval_steps": "eval_inner_steps",
    "eval_tasks": "test_tasks",
    "test_episodes": "test_tasks",
    "val_episodes": "val_tasks",
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Hyperparameters of a meta-training run, shared by every task family.

    Attributes:
      algo: the meta-learning algorithm (see ``metax.train.algorithms.ALGORITHMS``).
      shots: support examples per class (classification) or support points (regression).
      queries: query examples per class (or points) while meta-training; ``None``: ``shots``
        (resolved at construction: ``dataclasses.replace(config, shots=5)`` keeps the
        resolved value; pass ``queries=None`` with it to follow the new ``shots``).
      inner_steps: inner steps while meta-training.
      inner_lr: inner SGD rate (MAML++: the initial learned rate).
      outer_lr: Adam rate of the meta-update.
      outer_decay: its schedule: cosine (to 1% of outer_lr at the last step, so a
        resumed run keeps its steps), constant, or auto (cosine for maml++, as Antoniou
        et al.; constant otherwise, as Finn et al.).
      meta_batch: tasks per meta-step.
      chunk_size: tasks per chunk of the meta-batch (bounds memory); ``None``: all at once.
      steps: meta-steps in all.
      seed: seed of initialisation and task sampling.
      log_every: meta-steps between logged losses.
      eval_every: meta-steps between validations; 0 disables.
      checkpoint_every: meta-steps between checkpoints.
      val_tasks: validation tasks at each ``eval_every``.
      test_tasks: test tasks of the final evaluation.
      eval_inner_steps: fine-tuning steps at validation and test.
      eval_queries: query examples per class (or points) at validation and test;
        ``None``: ``queries``.
      eval_seed: seed of the validation and test tasks (the same for every run).
      steps_per_epoch: meta-steps per epoch of the annealing schedules.
      msl_anneal_epochs: epochs over which MAML++'s multi-step loss moves to the last step.
      first_order_epochs: derivative-order annealing: first-order epochs before exact ones.
      lam: iMAML's proximal strength (lambda).
      cg_steps: iMAML's conjugate-gradient iterations.
      cg_damping: iMAML: added to the identity of the CG system (0: exact gradient).
      lam_damping: iMAML: added to lam in the CG system's Hessian term (0: exact).
      hyper_lr: Alpha-MAML's hypergradient rate of the inner rates (SGD on them).
      outer_hyper_lr: Alpha-MAML's hypergradient rate of the outer rate (Adam-HD).
      devices: devices of the default backend the meta-batch is split over (metax.parallel).
    """

    family: ClassVar[str] = ""
    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "algo": tuple(ALGORITHMS),
        "outer_decay": OUTER_DECAYS,
    }

    algo: str = "maml"
    shots: int = 1
    queries: int | None = None
    inner_steps: int = 1
    inner_lr: float = 0.01
    outer_lr: float = 1e-3
    outer_decay: str = "auto"
    meta_batch: int = 32
    chunk_size: int | None = None
    steps: int = 60_000
    seed: int = 0
    log_every: int = 100
    eval_every: int = 1_000
    checkpoint_every: int = 1_000
    val_tasks: int = 100
    test_tasks: int = 600
    eval_inner_steps: int = 10
    eval_queries: int | None = None
    eval_seed: int = 1234
    steps_per_epoch: int = 1_000
    msl_anneal_epochs: int = 10
    first_order_epochs: int = 0
    lam: float = 2.0
    cg_steps: int = 5
    cg_damping: float = 0.0
    lam_damping: float = 0.0
    hyper_lr: float = 1e-6
    outer_hyper_lr: float = 1e-7
    devices: int = 1

    def __post_init__(self):
        if self.queries is None:
            object.__setattr__(self, "queries", self.shots)
        if self.eval_queries is None:
            object.__setattr__(self, "eval_queries", self.queries)
        for f in dataclasses.fields(self):
            if (
                isinstance(getattr(self, f.name), list)
                and field_kind(type(self), f.name) == "widths"
            ):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))  # from JSON
            problem = check_value(type(self), f.name, getattr(self, f.name))
            if problem:
                raise ValueError(f"{f.name} {problem}")
        share, rest = divmod(self.meta_batch, self.devices)
        if rest or (self.chunk_size is not None and share % self.chunk_size):
            raise ValueError(
                f"meta_batch={self.meta_batch} must divide over devices={self.devices} "
                f"into shares that chunk_size={self.chunk_size} divides."
            )

    def to_json(self) -> str:
        """The config as written to a run's ``config.json``, with its family."""
        return json.dumps({"family": self.family, **dataclasses.asdict(self)}, indent=2)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# kind -> (test, what a bad value is told); a field's kind follows from its type and name
RULES = {
    "rate": (
        lambda v: (_is_int(v) or isinstance(v, float)) and 0 < v < math.inf,
        "must be a positive finite number",
    ),
    "damping": (
        lambda v: (_is_int(v) or isinstance(v, float)) and 0 <= v < math.inf,
        "must be a finite number >= 0",
    ),
    "widths": (
        lambda v: isinstance(v, tuple) and bool(v) and all(_is_int(w) and w >= 1 for w in v),
        "must be a non-empty list of positive widths",
    ),
    "path": (lambda v: isinstance(v, str) and v != "", "must be a non-empty string"),
    "int": (_is_int, "must be an integer"),
    "count": (lambda v: _is_int(v) and v >= 1, "must be >= 1"),
    "sample": (lambda v: _is_int(v) and v >= 2, "must be >= 2 (a confidence interval needs two)"),
    "non-negative": (lambda v: _is_int(v) and v >= 0, "must be >= 0"),
}


@functools.cache
def _field_types(cls: type[RunConfig]) -> dict[str, Any]:
    """The fields' types, whether or not the module wrote its annotations as strings."""
    return typing.get_type_hints(cls)


def field_kind(cls: type[RunConfig], name: str) -> str:
    """``choice``, or one of :data:`RULES`' kinds, from the field's type and name."""
    if name in cls.choices:
        return "choice"
    annotation = _field_types(cls)[name]
    if annotation is float:
        return "damping" if name in DAMPINGS else "rate"
    if annotation is str:
        return "path"
    if typing.get_origin(annotation) is tuple:
        return "widths"
    if name == "test_tasks":
        return "sample"
    return "int" if name in ANY_INT else "non-negative" if name in NON_NEGATIVE else "count"


def check_value(cls: type[RunConfig], name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for field ``name`` (``"must be ..., got ..."``), or None."""
    kind = field_kind(cls, name)
    if value is None and {f.name: f.default for f in dataclasses.fields(cls)}[name] is None:
        return None  # an optional field left to its rule (e.g. queries: as shots)
    if kind == "choice":
        options = cls.choices[name]
        return None if value in options else f"must be one of {', '.join(options)}; got {value!r}."
    ok, what = RULES[kind]
    return None if ok(value) else f"{what}, got {value!r}."


def field_help(cls: type) -> dict[str, str]:
    """Each field's description from the ``Attributes`` sections of ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        section = (inspect.getdoc(klass) or "").partition("Attributes:\n")[2]
        for match in re.finditer(r"^  (\w+): (.+?)(?=^  \w+: |\Z)", section, re.M | re.S):
            docs[match.group(1)] = " ".join(match.group(2).split())
    return docs


def load_config(families: dict[str, Any], path: str | Path) -> RunConfig:
    """Reads a run's ``config.json`` into its family's ``config_class``, naming what is wrong.

    Args:
      families: the task families by name (``metax.train.FAMILIES``).
      path: the ``config.json``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run configuration at {path} (is this a metax run directory?)")
    try:
        fields = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt run configuration {path}: {e}") from e
    family = fields.pop("family", None)
    if family not in families:
        raise ValueError(
            f"{path} names no known task family ({family!r}); runs written by metax 0.1 lack "
            f'it: add "family" (one of {", ".join(map(repr, families))}) to that file '
            f"(renamed fields {sorted(LEGACY_NAMES)} are converted on load)."
        )
    cls = families[family].config_class
    fields = {LEGACY_NAMES.get(k, k): v for k, v in fields.items()}
    unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} in {path}")
    return cls(**fields)


def resumed_config(saved: RunConfig, given: RunConfig) -> RunConfig:
    """``saved`` (a run's config) with ``given``'s changes to :data:`RESUME_MAY_CHANGE`.

    Raises:
      ValueError: ``given`` is another family's, or differs from ``saved`` in a setting
        that changes what the meta-steps compute (naming each such value).
    """
    if type(given) is not type(saved):
        raise ValueError(f"cannot resume a {saved.family} run as a {given.family} run.")
    names = [f.name for f in dataclasses.fields(saved)]
    changed = {n: getattr(given, n) for n in names if getattr(given, n) != getattr(saved, n)}
    fixed = [n for n in changed if n not in RESUME_MAY_CHANGE]
    if fixed:
        differences = ", ".join(f"{n}={changed[n]!r} (run: {getattr(saved, n)!r})" for n in fixed)
        raise ValueError(
            f"cannot resume with {differences}: it changes what the run trains. A resumed run "
            f"may change only {', '.join(RESUME_MAY_CHANGE)}; start a new run for the rest."
        )
    return dataclasses.replace(saved, **changed)
