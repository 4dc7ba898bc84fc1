"""What every task family's training shares: learner by name, outer optimizer, jitted steps.

The functions read these fields of a run config (``SinusoidConfig`` or
``OmniglotConfig``): ``algo``, ``inner_lr``, ``inner_steps``, ``outer_lr``, ``steps``,
``seed``, ``steps_per_epoch``, ``msl_anneal_epochs``, ``first_order_epochs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

import metax
from metax.train.loop import TrainState


class Learners(NamedTuple):
    """The learner to train, and its first-order twin under derivative-order annealing."""

    main: metax.MetaLearner
    first_order: metax.MetaLearner | None = None


def frozen_in_inner_loop(
    inner_opt: optax.GradientTransformation, frozen: Any | None
) -> optax.GradientTransformation:
    """``inner_opt`` with zero updates for the leaves where ``frozen`` is ``True``.

    Args:
      inner_opt: the inner optimizer.
      frozen: ``None`` (nothing frozen), a pytree of booleans shaped like the
        parameters, or a function of the parameters returning one.
    """
    if frozen is None:
        return inner_opt
    return optax.chain(optax.masked(optax.set_to_zero(), frozen), inner_opt)


def build_learners(
    config: Any, loss_fn: Callable, *, frozen: Any | None = None, **options
) -> Learners:
    """The learner named by ``config.algo`` (``options`` go to its factory, e.g. ``has_aux``).

    ``frozen`` keeps parameters out of the inner loop (see :func:`frozen_in_inner_loop`);
    the outer loop still learns them.
    """
    inner = frozen_in_inner_loop(optax.sgd(config.inner_lr), frozen)
    n = config.inner_steps
    if config.algo in ("maml", "fomaml"):
        return Learners(
            metax.maml(
                loss_fn,
                inner_opt=inner,
                num_steps=n,
                first_order=config.algo == "fomaml",
                **options,
            )
        )
    if config.algo == "maml++":
        anneal = metax.derivative_order_annealing(
            lambda first_order: metax.maml_pp(
                loss_fn,
                num_steps=n,
                init_lr=config.inner_lr,
                inner_opt=frozen_in_inner_loop(metax.scale_by_learned_lr(), frozen),
                first_order=first_order,
                **options,
            ),
            first_order_epochs=config.first_order_epochs,
        )
        return Learners(
            anneal.second_order, anneal.first_order if config.first_order_epochs else None
        )
    if config.algo == "reptile":
        return Learners(metax.reptile(loss_fn, inner_opt=inner, num_steps=n, **options))
    if config.algo == "pretrain":
        return Learners(metax.pretrain(loss_fn, inner_opt=inner, num_steps=n, **options))
    raise ValueError(f"unknown algo {config.algo!r}")


def outer_optimizer(config: Any) -> optax.GradientTransformation:
    """Adam; MAML++ anneals its rate with a cosine schedule over the run."""
    if config.algo == "maml++":
        return optax.adam(optax.cosine_decay_schedule(config.outer_lr, config.steps, alpha=0.01))
    return optax.adam(config.outer_lr)


def step_selector(
    config: Any,
    learners: Learners,
    outer_opt: optax.GradientTransformation,
    sample_tasks: Callable[[jax.Array], metax.Task],
    *,
    stateful: bool = False,
    chunk_size: int | None = None,
) -> Callable[[int], Callable[[TrainState], tuple[TrainState, metax.StepInfo]]]:
    """``step_for(i)``: the jitted meta-step to run at meta-step ``i``.

    Each step samples its tasks from ``fold_in(key(seed), step)`` inside the jitted
    program, passes MAML++'s multi-step-loss weights as an array and the model state
    when ``stateful``. Under derivative-order annealing there are two steps, each
    compiled once.
    """
    base_key = jax.random.key(config.seed)

    def make_step(learner: metax.MetaLearner):
        meta_step = metax.meta_step(learner, outer_opt, chunk_size=chunk_size)

        @jax.jit
        def train_step(state: TrainState):
            tasks = sample_tasks(jax.random.fold_in(base_key, state.step))
            extra = {}
            if config.algo == "maml++":
                epoch = state.step / config.steps_per_epoch
                extra["step_weights"] = metax.msl_weights(
                    config.inner_steps, epoch, anneal_epochs=config.msl_anneal_epochs
                )
            if stateful:
                extra["state"] = state.model_state
            mp, opt_state, info = meta_step(state.meta_params, state.opt_state, tasks, **extra)
            return TrainState(mp, opt_state, state.step + 1, info.state if stateful else None), info

        return train_step

    main = make_step(learners.main)
    first = make_step(learners.first_order) if learners.first_order is not None else None
    switch = config.first_order_epochs * config.steps_per_epoch

    def step_for(i: int):
        return first if first is not None and i < switch else main

    return step_for
