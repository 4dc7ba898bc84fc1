"""Sinusoid regression end to end: model, learners, jitted step, evaluation, training."""

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
from metax.data.sinusoid import sample_sinusoid_tasks
from metax.nn import MLP
from metax.train.checkpoint import Checkpointer
from metax.train.config import SinusoidConfig
from metax.train.loop import TrainState, abstract_like, prepare_run_dir, run
from metax.train.metrics import MetricsLog, mean_and_ci95
from metax.train.recipe import build_learners, outer_optimizer, step_selector


def mse_loss_fn(model: MLP) -> Callable[[Any, dict], jax.Array]:
    """``loss(params, batch) = mean((model(batch["x"]) - batch["y"])^2)``."""

    def loss(params, batch):
        pred = model.apply({"params": params}, batch["x"])
        return jnp.mean((pred - batch["y"]) ** 2)

    return loss


class Problem(NamedTuple):
    """The pieces of a sinusoid run, built from its config."""

    model: MLP
    loss_fn: Callable
    learner: metax.MetaLearner
    outer_opt: optax.GradientTransformation
    step_for: Callable[[int], Callable[[TrainState], tuple[TrainState, metax.StepInfo]]]
    """``step_for(i)`` is the jitted step to run at meta-step ``i`` (two under
    derivative-order annealing, each compiled once)."""


def build(config: SinusoidConfig) -> Problem:
    """Builds model, learner, outer optimizer and the (jitted) training step."""
    model = MLP(hidden=config.hidden)
    loss_fn = mse_loss_fn(model)
    learners = build_learners(config, loss_fn)
    outer_opt = outer_optimizer(config)

    def sample(key):
        return sample_sinusoid_tasks(
            key, config.meta_batch, shots=config.shots, queries=config.queries
        ).tasks

    step_for = step_selector(config, learners, outer_opt, sample)
    return Problem(model, loss_fn, learners.main, outer_opt, step_for)


def initial_state(config: SinusoidConfig, problem: Problem) -> TrainState:
    """Fresh parameters (seeded), optimizer state and step 0."""
    params = problem.model.init(jax.random.key(config.seed + 1_000_003), jnp.zeros((1, 1)))[
        "params"
    ]
    meta_params = problem.learner.init(params)
    return TrainState(meta_params, problem.outer_opt.init(meta_params), jnp.int32(0))


def eval_rates(config: SinusoidConfig, meta_params: metax.MetaParams, num_steps: int):
    """Per-step fine-tuning rates for evaluation.

    MAML, FOMAML, Reptile and the baseline fine-tune with SGD at ``inner_lr``;
    MAML++ uses its learned per-layer per-step rates, the last step's rates
    repeated beyond the number of steps it was trained for.
    """
    if meta_params.hparams is None:
        return jax.tree.map(
            lambda p: jnp.full((num_steps,), config.inner_lr, p.dtype), meta_params.params
        )

    def extend(r):
        if num_steps <= r.shape[0]:
            return r[:num_steps]
        return jnp.concatenate([r, jnp.repeat(r[-1:], num_steps - r.shape[0])])

    return jax.tree.map(extend, meta_params.hparams)


def make_evaluator(config: SinusoidConfig, problem: Problem, *, num_tasks: int, num_steps: int):
    """Returns a jitted ``evaluate(meta_params) -> [num_tasks, num_steps + 1]`` MSE matrix.

    Column ``k`` is the query MSE after ``k`` fine-tuning steps on the K-shot
    support set (column 0: before any). The test tasks come from ``eval_seed`` and
    are the same for every algorithm and every run.
    """
    data = sample_sinusoid_tasks(
        jax.random.key(config.eval_seed), num_tasks, shots=config.shots, queries=config.eval_queries
    )
    loss_fn = problem.loss_fn

    @jax.jit
    def evaluate(meta_params):
        rates = eval_rates(config, meta_params, num_steps)

        def one_task(task):
            _, info = metax.adapt(
                loss_fn,
                meta_params.params,
                task.support,
                metax.scale_by_learned_lr(),
                num_steps,
                hparams=rates,
                eval_fn=lambda p: loss_fn(p, task.query),
            )
            before = loss_fn(meta_params.params, task.query)
            return jnp.concatenate([before[None], info.query_loss])

        return jax.vmap(one_task)(data.tasks)

    return evaluate


def summarize(mse: np.ndarray) -> dict[str, Any]:
    """Mean MSE and 95% CI after each number of fine-tuning steps."""
    rows = [mean_and_ci95(mse[:, k]) for k in range(mse.shape[1])]
    return {
        "num_tasks": int(mse.shape[0]),
        "mse": [m for m, _ in rows],
        "ci95": [c for _, c in rows],
        "diverged_tasks": [int(n) for n in np.sum(~np.isfinite(mse), axis=0)],
    }


def train(
    config: SinusoidConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains, evaluates on ``eval_tasks`` test tasks and writes plots.

    The run directory gets ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
    ``results.json``, ``loss_curve.png`` and ``fits.png``.

    Args:
      config: the run's hyperparameters (on resume, those saved in ``out`` win;
        a different ``steps`` extends the run).
      out: the run directory.
      resume: continue the run in ``out`` from its latest checkpoint.
      overwrite: replace an existing run in ``out``.
      progress: show a progress bar.

    Returns:
      The results dict also written to ``results.json``.
    """
    out = prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        saved = SinusoidConfig.load(out / "config.json")
        config = dataclasses.replace(saved, steps=config.steps)
    (out / "config.json").write_text(config.to_json())

    problem = build(config)
    state = initial_state(config, problem)
    quick = make_evaluator(config, problem, num_tasks=100, num_steps=1)

    def validate(s: TrainState) -> dict[str, float]:
        return {"val_mse_1step": float(jnp.mean(quick(s.meta_params)[:, 1]))}

    state, train_seconds = run(
        out, config, state, problem.step_for, resume=resume, validate=validate, progress=progress
    )
    results = evaluate_run(config, problem, state, out)
    results["train_seconds_this_session"] = round(train_seconds, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def evaluate_run(
    config: SinusoidConfig, problem: Problem, state: TrainState, out: Path
) -> dict[str, Any]:
    """Evaluation of ``state`` on ``eval_tasks`` tasks, plots included."""
    from metax.train import plots

    evaluate = make_evaluator(
        config, problem, num_tasks=config.eval_tasks, num_steps=config.eval_steps
    )
    meta_params = state.meta_params
    mse = np.asarray(evaluate(meta_params))
    results = {
        "algo": config.algo,
        "shots": config.shots,
        "steps": int(state.step),
        "eval_queries": config.eval_queries,
        **summarize(mse),
    }
    plots.loss_curve(
        MetricsLog(out / "metrics.jsonl").read(), out / "loss_curve.png", title=_title(config)
    )
    plots.sinusoid_fits(config, problem, meta_params, out / "fits.png", title=_title(config))
    return results


def _title(config: SinusoidConfig) -> str:
    return f"{config.algo}, {config.shots}-shot, {config.inner_steps} inner step(s), {config.steps} meta-steps"


def load_run(
    out: str | Path, *, step: int | None = None, **overrides: Any
) -> tuple[SinusoidConfig, Problem, TrainState]:
    """Config, problem and the checkpoint at ``step`` (default: latest) of a run directory.

    ``overrides`` change config fields for evaluation, e.g. ``eval_tasks=600``.
    """
    out = Path(out)
    config = dataclasses.replace(SinusoidConfig.load(out / "config.json"), **overrides)
    problem = build(config)
    checkpointer = Checkpointer(out / "checkpoints")
    state = checkpointer.restore(abstract_like(initial_state(config, problem)), step)
    checkpointer.close()
    return config, problem, state
