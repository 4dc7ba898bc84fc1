"""The generic meta-training loop: jitted step, logging, validation, checkpoints, resume."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import optax

from metax._src.base import MetaParams
from metax.train.checkpoint import Checkpointer
from metax.train.metrics import MetricsLog


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly: the RNG is derived from ``step``.

    ``model_state`` holds non-learned model state (per-step batch-norm statistics),
    ``None`` for stateless models.
    """

    meta_params: MetaParams
    opt_state: optax.OptState
    step: jax.Array
    model_state: Any = None


class NonFiniteLossError(FloatingPointError):
    """The meta-training loss became NaN or infinite."""


def check_run_dir(out: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Raises if ``out`` cannot take the run; changes nothing (see :func:`make_run_dir`).

    ``resume`` continues the run in ``out``; ``overwrite`` replaces it.

    Raises:
      ValueError: both ``resume`` and ``overwrite``.
      NotADirectoryError: ``out`` is a file.
      FileNotFoundError: ``resume`` but ``out`` holds no run.
      FileExistsError: ``out`` holds files and neither ``resume`` nor ``overwrite``, or
        ``overwrite`` but ``out`` holds files and no run (it is never deleted then).
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other.")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory.")
    has_run = (out / "config.json").is_file()
    if resume and not has_run:
        raise FileNotFoundError(f"cannot resume: {out} holds no metax run (no config.json).")
    if not resume and out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output directory {out} already exists and is not empty; pass --resume to "
                "continue that run or --overwrite to replace it."
            )
        if not has_run:  # a typo in --out must not delete a folder
            raise FileExistsError(
                f"--overwrite: {out} holds no metax run (no config.json); refusing to delete it."
            )


def make_run_dir(out: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Checks ``out`` (:func:`check_run_dir`), deletes it on ``overwrite`` and creates it.

    Raises:
      PermissionError: ``out`` cannot be written; and what :func:`check_run_dir` raises.
    """
    out = Path(out)
    check_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        return out
    if overwrite and out.exists():
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to output directory {out}: {e.strerror or e}") from e
    return out


def fit(
    state: TrainState,
    step_for: Callable[[int], Callable[[TrainState], tuple[TrainState, Any]]],
    config: Any,
    *,
    checkpointer: Checkpointer,
    metrics: MetricsLog,
    validate: Callable[[TrainState], dict[str, float]] | None = None,
    progress: bool = True,
    log_extra: Callable[[Any], dict[str, float]] | None = None,
) -> TrainState:
    """Runs meta-steps from ``state.step`` up to ``config.steps``.

    ``step_for(i)`` is the (caller-jitted) step for meta-step ``i``, one or two of
    them under derivative-order annealing; steps derive their randomness from
    ``state.step``, so a resumed run repeats an uninterrupted one exactly. Every
    ``config.log_every`` steps the loss is read back (dispatch stays asynchronous in
    between), checked for NaN/inf and logged with ``log_extra(info)``; ``validate``
    runs every ``eval_every`` steps (0: never); a checkpoint is written every
    ``checkpoint_every`` steps and at the end.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite; the last good checkpoint
        is kept.
    """
    num_steps, log_every = config.steps, config.log_every
    start = int(state.step)
    bar = _progress_bar(start, num_steps, enabled=progress)
    tic, tic_step = time.perf_counter(), start
    for i in range(start, num_steps):
        state, info = step_for(i)(state)
        done = i + 1
        if done % log_every == 0 or done == num_steps:
            loss = float(info.loss)
            now = time.perf_counter()
            rate = (done - tic_step) / max(now - tic, 1e-9)
            tic, tic_step = now, done
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"meta-training loss is {loss} at step {done}; the last good checkpoint "
                    f"(step {checkpointer.latest_step()}) in {checkpointer.directory} is kept "
                    "for `metax eval --step`. Start a new run with lower rates (a resumed run "
                    "repeats the same steps), or check the data."
                )
            extra = log_extra(info) if log_extra is not None else {}
            metrics.write({"step": done, "loss": loss, "steps_per_sec": round(rate, 2), **extra})
            bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{rate:.0f}")
        if done % config.checkpoint_every == 0 or done == num_steps:
            checkpointer.save(done, state)  # before validating: a crash there loses no step
        if validate is not None and config.eval_every and done % config.eval_every == 0:
            metrics.write({"step": done, **validate(state)})
        bar.update(1)
    bar.close()
    return state


def _progress_bar(start: int, total: int, *, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI)
    options = {"unit": "step", "dynamic_ncols": True, "mininterval": 0.5}
    return tqdm(total=total, initial=start, disable=None if enabled else True, **options)
