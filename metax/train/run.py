"""``train``, ``evaluate`` and ``load``, written once over every task family."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import metax
from metax import parallel
from metax.train import algorithms
from metax.train.checkpoint import Checkpointer, complete_steps
from metax.train.config import EVAL_MAY_CHANGE, RunConfig, load_config, resumed_config
from metax.train.family import TaskFamily
from metax.train.loop import TrainState, check_run_dir, fit, make_run_dir
from metax.train.metrics import MetricsLog
from metax.train.omniglot import Omniglot
from metax.train.sinusoid import Sinusoid

# The task families by name (config.json's "family"); adding one is one module and one entry.
FAMILIES: dict[str, type[TaskFamily]] = {"sinusoid": Sinusoid, "omniglot": Omniglot}
StepFn = Callable[[TrainState], tuple[TrainState, metax.StepInfo]]


class Run(NamedTuple):
    """A run's pieces: its config, family, learner and outer optimizer."""

    config: RunConfig
    family: TaskFamily
    learners: metax.DerivativeOrderAnnealing
    outer_opt: Any
    mesh: Mesh | None = None  # the devices the meta-batch is split over, if several

    @property
    def learner(self) -> metax.MetaLearner:
        """The learner of the exact phase; every learner of a run adapts the same way."""
        return self.learners.second_order


def build(config: RunConfig, **family_options: Any) -> Run:
    """The family, learners and outer optimizer of ``config`` (no data are loaded)."""
    family = FAMILIES[config.family](config, **family_options)
    learners = algorithms.learners(config, family.model_spec())
    mesh = parallel.task_mesh(config.devices) if config.devices > 1 else None
    return Run(config, family, learners, algorithms.outer_optimizer(config), mesh)


def initial_state(run: Run) -> TrainState:
    """Fresh meta-parameters (from ``seed``), optimizer state, model state and step 0."""
    params, model_state = run.family.init(jax.random.key(run.config.seed + 1_000_003))
    meta_params = run.learner.init(params)
    return TrainState(meta_params, run.outer_opt.init(meta_params), jnp.int32(0), model_state)


def step_selector(run: Run) -> Callable[[int], StepFn]:
    """``step_for(i)``: the jitted meta-step to run at meta-step ``i``.

    Each step samples its tasks from :func:`task_keys` inside the jitted program (each
    device its own share) and passes the multi-step-loss weights of its epoch as an array (never
    recompiling); learners that do not use them ignore them. Under derivative-order
    annealing there are two steps, each compiled once.
    """
    config, sample = run.config, run.family.sample_task

    def make_step(learner: metax.MetaLearner) -> StepFn:
        if run.mesh is None:
            step = metax.meta_step(learner, run.outer_opt, chunk_size=config.chunk_size)
            meta_step = lambda mp, opt, keys, **ex: step(mp, opt, jax.vmap(sample)(keys), **ex)  # noqa: E731
        else:
            meta_step = parallel.data_parallel(
                learner, run.outer_opt, run.mesh, chunk_size=config.chunk_size, sample=sample
            )

        @jax.jit
        def train_step(state: TrainState):
            epoch, anneal = state.step / config.steps_per_epoch, config.msl_anneal_epochs
            weights = metax.msl_weights(config.inner_steps, epoch, anneal_epochs=anneal)
            extra = {"step_weights": weights, "state": state.model_state}
            keys = task_keys(config, state.step)
            mp, opt_state, info = meta_step(state.meta_params, state.opt_state, keys, **extra)
            return TrainState(mp, opt_state, state.step + 1, info.state), info

        if run.mesh is not None and run.mesh.devices.flat[0].platform == "cpu":
            # XLA:CPU runs all its devices on one thread pool; with steps queued ahead, two
            # devices can wait in the collectives of different steps until the rendezvous
            # times out and aborts the process. One step in flight at a time avoids it.
            return lambda state: jax.block_until_ready(train_step(state))
        return train_step

    first_order, exact = make_step(run.learners.first_order), make_step(run.learners.second_order)
    switch = run.learners.switch_epoch * config.steps_per_epoch  # each jit compiles when first run
    return lambda i: first_order if i < switch else exact


def task_keys(config: RunConfig, step: jax.Array) -> jax.Array:
    """The keys of meta-step ``step``'s tasks, one per task, from ``seed`` alone."""
    return jax.random.split(
        jax.random.fold_in(jax.random.key(config.seed), step), config.meta_batch
    )


def train(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **family_options: Any,
) -> dict[str, Any]:
    """Meta-trains, validates every ``eval_every`` steps, tests, and writes the run directory.

    The directory gets ``config.json`` (with the family), ``metrics.jsonl``,
    ``checkpoints/``, ``results.json`` and the family's figures; data problems raise
    before anything is compiled or written. Of several processes (``metax.parallel.
    initialize``), the first writes the files and evaluates.

    Args:
      config: the run's hyperparameters. On resume, those saved in ``out``, changed
        where ``config`` differs (see :func:`resumed`).
      out: the run directory.
      resume: continue the run in ``out`` from its latest checkpoint.
      overwrite: replace an existing run in ``out``.
      progress: show a progress bar.
      **family_options: passed to the family, e.g. ``data=`` an already loaded Omniglot.

    Returns:
      The results, also written to ``results.json``.

    Example (a short sinusoid run; :func:`load` restores it, :func:`evaluate` tests it):

    >>> import shutil, tempfile
    >>> from metax.train import SinusoidConfig, evaluate, load, train
    >>> config = SinusoidConfig(steps=20, meta_batch=2, hidden=(8,), test_tasks=10,
    ...                         eval_every=0, log_every=10, checkpoint_every=10)
    >>> folder = tempfile.mkdtemp()
    >>> out = folder + "/run"
    >>> train(config, out, progress=False)["steps_trained"]
    20
    >>> run, state = load(out, step=10, test_tasks=20)
    >>> evaluate(run, state)["steps_trained"], run.config.test_tasks
    (10, 20)
    >>> shutil.rmtree(folder)
    """
    out, main = Path(out), jax.process_index() == 0
    if main:  # before the data are loaded: a taken directory is the cheaper mistake to report
        check_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        config = resumed(out, config)
    run = build(config, **family_options)
    run.family.check()
    if main:  # only now, with the data checked, is an overwritten run deleted
        make_run_dir(out, resume=resume, overwrite=overwrite)
        (out / "config.json").write_text(config.to_json())
    parallel.barrier("run directory ready")
    checkpointer = Checkpointer(out / "checkpoints")
    metrics = MetricsLog(out / "metrics.jsonl", read_only=not main)
    state = initial_state(run)
    if run.mesh is not None:  # on the mesh from the start: the step compiles once
        state = jax.device_put(jax.tree.map(np.asarray, state), parallel.replicated(run.mesh))
    if resume and checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)  # into the state's shapes and shardings
    if resume:  # the records past the restored step (all of them, if none was) are redone
        metrics.truncate_after(int(state.step))
    tic = time.perf_counter()
    try:
        state = fit(
            state,
            step_selector(run),
            config,
            checkpointer=checkpointer,
            metrics=metrics,
            validate=(lambda s: _validate(run, _one_device(s))) if main else None,
            progress=progress and main,
            log_extra=lambda info: _step_metrics(run, parallel.gather(info)),
        )
    finally:
        checkpointer.close()
    results = {"process_index": jax.process_index()}
    if main:
        one = _one_device(state)
        results = evaluate(run, one)
        results["train_seconds_this_session"] = round(time.perf_counter() - tic, 1)
        (out / "results.json").write_text(json.dumps(results, indent=2))  # before the figures
        run.family.plot(out, metrics.read(), run.learner, one.meta_params)
    parallel.barrier("results written")
    return results


def resumed(
    out: str | Path, changes: RunConfig | Mapping[str, Any], *, family: str | None = None
) -> RunConfig:
    """The config of the run in ``out``, changed where ``changes`` differ from it.

    Only settings of ``RESUME_MAY_CHANGE`` may change (a larger ``steps`` extends the
    run, ``devices`` or ``chunk_size`` move it to other hardware), and ``steps`` not
    under a cosine-decayed rate, nor below the step the run reached.

    Args:
      out: the run directory.
      changes: a config of the run's family, or the fields to change (e.g. the flags given).
      family: the family the caller expects the run to be, if it knows.

    Raises:
      ValueError: another family, or a change that alters what the meta-steps compute
        (naming each value), before anything is compiled.
    """
    out = Path(out)
    saved = load_config(FAMILIES, out / "config.json")
    if family is not None and saved.family != family:
        raise ValueError(
            f"{out} holds a {saved.family} run: resume it with metax train {saved.family}."
        )
    given = changes if isinstance(changes, RunConfig) else dataclasses.replace(saved, **changes)
    config = resumed_config(saved, given)
    if config.steps != saved.steps and algorithms.outer_decay(config) == "cosine":
        raise ValueError(
            f"cannot resume with steps={config.steps} (run: {saved.steps}): the outer rate is "
            "cosine-decayed over the run's steps, so every step left would change its rate. "
            "Start a new run for another length."
        )
    reached = max(complete_steps(out / "checkpoints"), default=None)  # JAX not started yet
    if reached is not None and reached > config.steps:
        raise ValueError(
            f"cannot resume with steps={config.steps}: the run reached step {reached}."
        )
    return config


def _step_metrics(run: Run, info: metax.StepInfo) -> dict[str, float]:
    """The family's numbers, and the solver's, e.g. iMAML's CG residual (mean and worst task)."""
    metrics = run.family.train_metrics(info)
    solver = info.aux.solver
    for name, value in ({} if solver is None else solver._asdict()).items():
        if np.ndim(value) == 1:  # one number per task
            metrics[name] = float(np.mean(value))
            metrics[f"{name}_max"] = float(np.max(value))
    return metrics


def _validate(run: Run, state: TrainState) -> dict[str, float]:
    return run.family.validate(run.learner, state.meta_params, state.model_state)


def _one_device(state: TrainState) -> TrainState:
    """``state`` (replicated) on one local device: evaluation runs on one, whatever the mesh."""
    return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, state)


def evaluate(run: Run, state: TrainState) -> dict[str, Any]:
    """Tests ``state`` on the family's ``test_tasks`` test tasks."""
    shown = ("family", "algo", "shots", "test_tasks", "eval_queries", "eval_inner_steps")
    results = {name: getattr(run.config, name) for name in shown}
    results["steps_trained"] = int(state.step)
    results.update(run.family.test(run.learner, state.meta_params, state.model_state))
    return results


def load(out: str | Path, *, step: int | None = None, **overrides: Any) -> tuple[Run, TrainState]:
    """A run directory's run and its checkpoint at ``step`` (default: the latest).

    ``overrides`` change how the run is tested, the settings of ``EVAL_MAY_CHANGE``
    (e.g. ``test_tasks=6000``, ``eval_queries=15``, ``data="omniglot.npz"``); ``data=``
    an already loaded dataset is handed to the family. No data are loaded until the
    family needs them.

    Raises:
      ValueError: an override of another setting (it would change the model the
        checkpoint holds, or evaluate it as it was not trained), naming it.
    """
    out = Path(out)
    refused = sorted(set(overrides) - set(EVAL_MAY_CHANGE))
    if refused:
        raise ValueError(
            f"evaluation may change only {', '.join(EVAL_MAY_CHANGE)} of a saved run, "
            f"not {', '.join(refused)}."
        )
    config = load_config(FAMILIES, out / "config.json")
    if "data" in overrides and not hasattr(config, "data"):
        raise ValueError(f"{config.family} runs read no data; drop data=.")
    if isinstance(overrides.get("data"), os.PathLike):
        overrides["data"] = str(overrides["data"])
    loaded = not isinstance(overrides.get("data", ""), str)
    family_options = {"data": overrides.pop("data")} if loaded else {}
    # restored onto one device (evaluation runs on one, whatever mesh trained the run)
    run = build(dataclasses.replace(config, devices=1, **overrides), **family_options)
    checkpointer = Checkpointer(out / "checkpoints")
    try:
        state = checkpointer.restore(initial_state(run), step)
    finally:
        checkpointer.close()
    return run, state
