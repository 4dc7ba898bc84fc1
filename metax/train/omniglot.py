"""Few-shot Omniglot end to end: data, Conv-4 learners, jitted step, evaluation, training."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import metax
from metax.data.episodes import EpisodeSpec, check_episode_spec, sample_episode, sample_episodes
from metax.data.omniglot import Omniglot, load_npz, load_png_folders, load_tfds
from metax.data.splits import Split, alphabet_split, maml_split
from metax.nn import BN_POLICIES, Conv4, ResNet12
from metax.train.checkpoint import Checkpointer
from metax.train.config import load_config
from metax.train.finetune import fine_tuning_rates
from metax.train.loop import TrainState, abstract_like, prepare_run_dir, run
from metax.train.metrics import MetricsLog, mean_and_ci95
from metax.train.recipe import (
    build_learners,
    frozen_in_inner_loop,
    outer_optimizer,
    step_selector,
)

ALGOS = ("maml", "fomaml", "maml++", "reptile")
SPLITS = ("maml", "alphabet")
BACKBONES = ("conv4", "resnet12")
INNER_BN = ("adapt", "freeze")


@dataclasses.dataclass(frozen=True)
class OmniglotConfig:
    """Hyperparameters of ``metax train omniglot``; defaults follow Finn et al. (2017).

    Attributes:
      data: an Omniglot npz, a ``<Alphabet>/characterNN/*.png`` folder or zip, or
        ``tfds`` (tensorflow-datasets; train + test splits pooled).
      split: ``maml`` (1,100 train / 100 val / 423 test characters, alphabets mixed) or
        ``alphabet`` (Lake's evaluation alphabets for test; 5 background alphabets for val).
      algo: ``maml``, ``fomaml``, ``maml++`` or ``reptile``.
      ways, shots: N-way K-shot.
      queries: query examples per class while meta-training.
      eval_queries: query examples per class when evaluating; ``None``: ``queries``, as
        in Finn et al.'s and Antoniou et al.'s test protocols. With batch statistics
        (``bn_policy="batch"`` or ``"per_step_batch"``) the query set is normalised as one
        batch, so its size is part of the protocol: a 75-image query set is normalised
        differently from the 5-image ones seen in meta-training.
      inner_steps: inner steps while meta-training.
      eval_inner_steps: fine-tuning steps at validation and test.
      inner_lr: inner SGD rate (MAML++: initial learned rate).
      outer_lr: Adam rate of the meta-update (MAML++: cosine-annealed).
      meta_batch: tasks per meta-step.
      chunk_size: tasks per chunk of the meta-batch (bounds memory); ``None``: all.
      steps: meta-steps.
      features: filters of Conv-4 (ResNet-12: widths ``features * (1, 2.5, 5, 10)``).
      backbone: ``conv4`` or ``resnet12``.
      bn_policy: ``batch`` (MAML), ``per_step`` (MAML++'s BNRS + BNWB, the query
        normalised with the support statistics of its step) or ``per_step_batch``
        (per-step BN weights with batch statistics, as MAML++'s reference code does in
        practice); ``auto`` picks ``per_step`` for ``maml++``.
      inner_bn: ``adapt`` (batch-norm scale and bias are fine-tuned in the inner loop
        like every other parameter) or ``freeze`` (only the outer loop learns them, as
        in Finn et al.'s and Antoniou et al.'s code).
      conv_strategy: ``auto``, ``patches``, ``patches_autodiff`` or ``xla`` (see
        :class:`metax.nn.Conv3x3`).
      seed, log_every, eval_every, checkpoint_every: as for sinusoid.
      val_episodes: validation episodes at each ``eval_every``.
      test_episodes: test episodes of the final evaluation.
      eval_seed: seed of validation and test episodes.
      steps_per_epoch, msl_anneal_epochs, first_order_epochs: MAML++ schedules.
    """

    data: str = "../shared/data/omniglot/omniglot_105.npz"
    split: str = "maml"
    algo: str = "maml"
    ways: int = 5
    shots: int = 1
    queries: int = 1
    eval_queries: int | None = None
    inner_steps: int = 1
    eval_inner_steps: int = 10
    inner_lr: float = 0.4
    outer_lr: float = 1e-3
    meta_batch: int = 32
    chunk_size: int | None = None
    steps: int = 60_000
    features: int = 64
    backbone: str = "conv4"
    bn_policy: str = "auto"
    inner_bn: str = "adapt"
    conv_strategy: str = "auto"
    seed: int = 0
    log_every: int = 50
    eval_every: int = 1_000
    checkpoint_every: int = 500
    val_episodes: int = 200
    test_episodes: int = 600
    eval_seed: int = 4321
    steps_per_epoch: int = 500
    msl_anneal_epochs: int = 10
    first_order_epochs: int = 0

    def __post_init__(self):
        if self.eval_queries is None:
            object.__setattr__(self, "eval_queries", self.queries)
        if self.algo not in ALGOS:
            raise ValueError(
                f"unknown algo {self.algo!r} for omniglot; choose one of {', '.join(ALGOS)}."
            )
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; choose one of {', '.join(SPLITS)}.")
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}."
            )
        if self.bn_policy not in ("auto", *BN_POLICIES):
            raise ValueError(
                f"unknown bn_policy {self.bn_policy!r}; choose auto or one of {BN_POLICIES}."
            )
        if self.inner_bn not in INNER_BN:
            raise ValueError(
                f"unknown inner_bn {self.inner_bn!r}; choose one of {', '.join(INNER_BN)}."
            )
        for name in (
            "ways",
            "shots",
            "queries",
            "eval_queries",
            "inner_steps",
            "eval_inner_steps",
            "meta_batch",
            "steps",
            "features",
            "log_every",
            "checkpoint_every",
            "val_episodes",
            "test_episodes",
            "steps_per_epoch",
            "msl_anneal_epochs",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.chunk_size is not None and (
            self.chunk_size < 1 or self.meta_batch % self.chunk_size
        ):
            raise ValueError(
                f"chunk_size={self.chunk_size} must divide meta_batch={self.meta_batch}."
            )
        for name in ("inner_lr", "outer_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}.")

    @property
    def resolved_bn_policy(self) -> str:
        """The batch-norm policy after ``auto`` is resolved."""
        if self.bn_policy != "auto":
            return self.bn_policy
        return "per_step" if self.algo == "maml++" else "batch"

    def to_json(self) -> str:
        """Serialises the config."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> OmniglotConfig:
        """Reads a ``config.json``."""
        return load_config(cls, path)


def load_data(source: str) -> Omniglot:
    """Loads Omniglot from an npz, a PNG folder/zip, or ``tfds``."""
    if source == "tfds":
        train, test = load_tfds("train"), load_tfds("test")
        return Omniglot(
            images=np.concatenate([train.images, test.images]),
            alphabet=np.concatenate([train.alphabet, test.alphabet]),
            alphabet_names=train.alphabet_names,
            char_id=np.concatenate([train.char_id, test.char_id]),
            is_background=np.concatenate(
                [np.ones(train.num_classes, bool), np.zeros(test.num_classes, bool)]
            ),
        )
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"no Omniglot data at {path}; pass an npz (like shared/data/omniglot/omniglot_105.npz), "
            "a folder or zip of <Alphabet>/characterNN/*.png, or 'tfds'."
        )
    if path.suffix == ".npz":
        return load_npz(path)
    return load_png_folders(path)


def make_split(config: OmniglotConfig, data: Omniglot) -> Split:
    """The class split named by ``config.split``."""
    if config.split == "maml":
        return maml_split(data.num_classes)
    names = sorted({data.alphabet_names[a] for a in np.unique(data.alphabet[data.is_background])})
    return alphabet_split(data, val_alphabets=names[:5])


def cross_entropy_loss(model: Conv4 | ResNet12, *, train: bool, stateful: bool) -> Callable:
    """Mean cross-entropy with accuracy as aux, in metax's stateless or stateful form."""

    def logits_and_state(params, state, x, step):
        variables = {"params": params}
        if stateful:
            variables["batch_stats"] = state
        if stateful and train:
            logits, updates = model.apply(
                variables, x, step=step, train=True, mutable=["batch_stats"]
            )
            return logits, updates.get("batch_stats", state)  # per_step_batch: no statistics
        return model.apply(variables, x, step=step, train=train), state

    def metrics(logits, y):
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == y)

    if stateful:

        def stateful_loss(params, state, batch, step):
            logits, new_state = logits_and_state(params, state, batch["x"], step)
            loss, acc = metrics(logits, batch["y"])
            return loss, (new_state, {"accuracy": acc})

        return stateful_loss

    def loss(params, batch):
        logits, _ = logits_and_state(params, None, batch["x"], 0)
        value, acc = metrics(logits, batch["y"])
        return value, {"accuracy": acc}

    return loss


class Problem(NamedTuple):
    """The pieces of an Omniglot run."""

    model: Conv4 | ResNet12
    stateful: bool
    learner: metax.MetaLearner
    outer_opt: optax.GradientTransformation
    pools: dict[str, jax.Array]
    step_for: Callable[[int], Callable]


def build(config: OmniglotConfig, data: Omniglot) -> Problem:
    """Validates the episode shapes against the data, then builds model, learner and step."""
    split = make_split(config, data)
    train_spec = EpisodeSpec(config.ways, config.shots, config.queries, rotate=True)
    eval_spec = EpisodeSpec(config.ways, config.shots, config.eval_queries)
    drawers = data.images.shape[1]
    check_episode_spec(train_spec, len(split.train), drawers, name="meta-training split")
    for name in ("val", "test"):
        check_episode_spec(eval_spec, len(getattr(split, name)), drawers, name=f"{name} split")
    pools = {
        name: jnp.asarray(data.images[getattr(split, name)]) for name in ("train", "val", "test")
    }

    policy = config.resolved_bn_policy
    # Both per-step policies need the inner step index, which metax hands to stateful
    # losses; per_step_batch carries an empty state.
    stateful = policy in ("per_step", "per_step_batch")
    common = {
        "num_classes": config.ways,
        "num_steps": config.inner_steps,
        "bn_policy": policy,
        "conv_strategy": config.conv_strategy,
    }
    if config.backbone == "conv4":
        model = Conv4(features=config.features, **common)
    else:
        f = config.features
        model = ResNet12(widths=(f, int(2.5 * f), 5 * f, 10 * f), **common)
    loss_fn = cross_entropy_loss(model, train=True, stateful=stateful)
    options = {"has_aux": True, "stateful": stateful}
    if stateful:  # per_step: the query is normalised with the support statistics of its step
        options["query_loss_fn"] = cross_entropy_loss(model, train=False, stateful=True)
    learners = build_learners(config, loss_fn, frozen=inner_frozen(config), **options)
    outer_opt = outer_optimizer(config)
    train_pool = pools["train"]
    step_for = step_selector(
        config,
        learners,
        outer_opt,
        lambda key: sample_episodes(key, train_pool, train_spec, config.meta_batch),
        stateful=stateful,
        chunk_size=config.chunk_size,
    )
    return Problem(model, stateful, learners.main, outer_opt, pools, step_for)


def is_batch_norm(params: Any) -> Any:
    """A pytree of booleans: ``True`` for the batch-norm scales and biases."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(str(getattr(k, "key", "")).startswith("StepBatchNorm") for k in path),
        params,
    )


def inner_frozen(config: OmniglotConfig) -> Callable | None:
    """What ``config.inner_bn`` keeps out of the inner loop (training and fine-tuning)."""
    return is_batch_norm if config.inner_bn == "freeze" else None


def initial_state(config: OmniglotConfig, problem: Problem) -> TrainState:
    """Fresh parameters, optimizer state, model state and step 0."""
    variables = problem.model.init(
        jax.random.key(config.seed + 1_000_003), jnp.zeros((2, 28, 28, 1))
    )
    meta_params = problem.learner.init(variables["params"])
    model_state = variables.get("batch_stats", {}) if problem.stateful else None
    return TrainState(meta_params, problem.outer_opt.init(meta_params), jnp.int32(0), model_state)


def make_episode_scorer(config: OmniglotConfig, problem: Problem) -> Callable:
    """``score(meta_params, model_state, task) -> (query logits, query accuracy)``, traceable.

    Fine-tunes for ``eval_inner_steps`` SGD steps (MAML++: learned rates) on the
    support set, then scores the query. With the per-step policy the query is
    normalised with the support statistics of the last step (``train=False``),
    exactly as in meta-training; with the batch policy, with its own statistics.
    """
    support_loss = cross_entropy_loss(problem.model, train=True, stateful=problem.stateful)
    steps = config.eval_inner_steps

    def score(meta_params, model_state, task):
        rates = fine_tuning_rates(meta_params, steps, default_lr=config.inner_lr)
        adapted, info = metax.adapt(
            support_loss,
            meta_params.params,
            task.support,
            frozen_in_inner_loop(metax.scale_by_learned_lr(), inner_frozen(config)),
            steps,
            hparams=rates,
            has_aux=True,
            stateful=problem.stateful,
            state=model_state if problem.stateful else None,
        )
        variables = {"params": adapted}
        if problem.stateful:
            variables["batch_stats"] = info.state
        logits = problem.model.apply(
            variables, task.query["x"], step=steps - 1, train=not problem.stateful
        )
        return logits, jnp.mean(jnp.argmax(logits, -1) == task.query["y"])

    return score


def make_evaluator(
    config: OmniglotConfig, problem: Problem, *, pool: str, num_episodes: int, chunk: int = 50
):
    """``evaluate(meta_params, model_state) -> [num_episodes]`` query accuracies.

    The episodes are the same for every run (``eval_seed``); see
    :func:`make_episode_scorer` for how each is fine-tuned and scored.
    """
    spec = EpisodeSpec(config.ways, config.shots, config.eval_queries)
    images = problem.pools[pool]
    score = make_episode_scorer(config, problem)
    num_chunks = -(-num_episodes // chunk)
    keys = jax.random.split(
        jax.random.key(config.eval_seed + (0 if pool == "test" else 1)), num_chunks * chunk
    )

    @jax.jit
    def accuracies(meta_params, model_state, chunk_keys):
        return jax.lax.map(
            lambda k: score(meta_params, model_state, sample_episode(k, images, spec))[1],
            chunk_keys,
        )

    def evaluate(meta_params, model_state):
        out = [
            accuracies(meta_params, model_state, keys[i * chunk : (i + 1) * chunk])
            for i in range(num_chunks)
        ]
        return np.concatenate([np.asarray(o) for o in out])[:num_episodes]

    return evaluate


def train(
    config: OmniglotConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    data: Omniglot | None = None,
) -> dict[str, Any]:
    """Meta-trains on Omniglot, validates periodically, tests on ``test_episodes``.

    The run directory gets ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
    ``results.json`` and ``learning_curve.png``. Data problems (missing files,
    impossible episode shapes) raise before anything is compiled.
    """
    if resume:
        config = dataclasses.replace(
            OmniglotConfig.load(Path(out) / "config.json"), steps=config.steps
        )
    data = load_data(config.data) if data is None else data
    problem = build(config, data)  # validates shapes before touching the run directory
    out = prepare_run_dir(out, resume=resume, overwrite=overwrite)
    (out / "config.json").write_text(config.to_json())
    state = initial_state(config, problem)
    validate_acc = make_evaluator(config, problem, pool="val", num_episodes=config.val_episodes)

    def validate(s: TrainState) -> dict[str, float]:
        return {"val_accuracy": float(np.mean(validate_acc(s.meta_params, s.model_state)))}

    state, seconds = run(
        out,
        config,
        state,
        problem.step_for,
        resume=resume,
        validate=validate,
        progress=progress,
        log_extra=lambda info: {"train_accuracy": float(jnp.mean(info.aux.query_aux["accuracy"]))},
    )
    results = evaluate_run(config, problem, state, out)
    results["train_seconds_this_session"] = round(seconds, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def evaluate_run(
    config: OmniglotConfig, problem: Problem, state: TrainState, out: Path
) -> dict[str, Any]:
    """Test accuracy on ``test_episodes`` episodes with a 95% CI, and the learning-curve plot."""
    from metax.train import plots

    acc = make_evaluator(config, problem, pool="test", num_episodes=config.test_episodes)(
        state.meta_params, state.model_state
    )
    mean, ci = mean_and_ci95(acc)
    results = {
        "algo": config.algo,
        "ways": config.ways,
        "shots": config.shots,
        "steps_trained": int(state.step),
        "test_episodes": int(acc.size),
        "eval_queries": config.eval_queries,
        "eval_inner_steps": config.eval_inner_steps,
        "test_accuracy": mean,
        "ci95": ci,
    }
    plots.classification_curve(
        MetricsLog(out / "metrics.jsonl").read(),
        out / "learning_curve.png",
        title=f"{config.algo} {config.ways}-way {config.shots}-shot Omniglot",
    )
    return results


def load_run(
    out: str | Path,
    *,
    data: Omniglot | None = None,
    step: int | None = None,
    **overrides: Any,
) -> tuple[OmniglotConfig, Problem, TrainState]:
    """Config, problem and checkpointed state of an Omniglot run directory.

    Args:
      out: the run directory.
      data: the dataset, if already loaded (default: ``config.data``).
      step: which checkpoint (default: the latest).
      **overrides: config fields to change for evaluation, e.g. ``eval_queries=1``.
    """
    out = Path(out)
    config = dataclasses.replace(OmniglotConfig.load(out / "config.json"), **overrides)
    problem = build(config, load_data(config.data) if data is None else data)
    checkpointer = Checkpointer(out / "checkpoints")
    state = checkpointer.restore(abstract_like(initial_state(config, problem)), step)
    checkpointer.close()
    return config, problem, state
