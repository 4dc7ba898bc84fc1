"""What every :class:`metax.MetaLearner` shares: its fine-tuning path and query score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.adapt import adapt, canonical_eval
from metax._src.base import (
    AdaptInfo,
    Batch,
    MetaLearner,
    MetaParams,
    ModelState,
    Params,
    Task,
    TaskAux,
)
from metax._src.loss_forms import CanonicalLoss, LossForm, canonical_loss
from metax._src.transforms import per_step_slice

AdaptFn = Callable[..., tuple[Params, AdaptInfo]]


TaskLoss = Callable[[MetaParams, Task, ModelState, "jax.Array | None"], tuple[jax.Array, TaskAux]]


class FineTuning(NamedTuple):
    """A learner's inner loop, in two forms.

    Attributes:
      adapt: the public ``MetaLearner.adapt``.
      run: ``run(meta_params, support, *, num_steps, state, eval_fn=None)`` with
        ``eval_fn`` in canonical form ``(params, state, step) -> (value, aux)``; the
        learners' losses call it.
    """

    adapt: AdaptFn
    run: AdaptFn


def check_meta_params(meta_params: Any) -> None:
    """Raises a TypeError unless ``meta_params`` is a :class:`metax.MetaParams`."""
    if not isinstance(meta_params, MetaParams):
        raise TypeError(
            "meta_params must be a metax.MetaParams (from learner.init), got "
            f"{type(meta_params).__name__}."
        )


def make_learner(
    task_loss: TaskLoss,
    inner: FineTuning,
    *,
    init: Callable[[Params], MetaParams] = lambda params: MetaParams(params=params),
) -> MetaLearner:
    """A :class:`metax.MetaLearner` with the one contract every algorithm shares.

    Args:
      task_loss: ``task_loss(meta_params, task, state, step_weights) -> (loss, TaskAux)``,
        the algorithm's outer loss of one task.
      inner: its inner loop (:func:`fine_tuning`), which is also its ``adapt``.
      init: ``init(params) -> MetaParams`` (default: no learned hyperparameters).
    """

    def loss(
        meta_params: MetaParams,
        task: Task,
        *,
        state: ModelState = None,
        step_weights: jax.Array | None = None,
    ) -> tuple[jax.Array, TaskAux]:
        check_meta_params(meta_params)
        return task_loss(meta_params, task, state, step_weights)

    return MetaLearner(init=init, loss=loss, adapt=inner.adapt)


def fine_tuning(
    loss_fn: Callable,
    form: LossForm,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    first_order: bool = False,
    remat: bool = False,
    adapt_mask: Any = None,
    proximal: float | None = None,
) -> FineTuning:
    """A learner's inner loop: the one path from meta-parameters to task parameters.

    ``adapt(meta_params, support, *, num_steps=None, state=None,
    step_weights=None, eval_fn=None)`` runs ``num_steps`` (default: the trained
    number) steps of ``inner_opt`` from ``meta_params.params``. Learned per-step
    hyperparameters follow :func:`metax.per_step_slice`: past the trained steps the
    last step's values are reused. ``adapt_mask`` (see :func:`metax.adapt`) chooses
    the parameters the inner loop adapts. ``proximal`` (``lam``) adds
    ``lam / 2 ||params - meta_params.params||^2`` to the support loss (iMAML's
    proximal inner problem). ``step_weights`` is accepted and ignored, so
    every learner takes the same keywords; ``eval_fn`` has the user's loss form.
    """
    validation.check_num_steps(num_steps)
    f = canonical_loss(loss_fn, form)
    trained_steps = num_steps

    def learner_adapt(
        meta_params: MetaParams,
        support: Batch,
        *,
        num_steps: int | None = None,
        state: ModelState = None,
        step_weights: jax.Array | None = None,
        eval_fn: Callable | None = None,
    ) -> tuple[Params, AdaptInfo]:
        del step_weights
        return run(
            meta_params,
            support,
            num_steps=trained_steps if num_steps is None else num_steps,
            state=state,
            eval_fn=None if eval_fn is None else canonical_eval(eval_fn, form),
        )

    def run(meta_params, support, *, num_steps, state, eval_fn=None):
        check_meta_params(meta_params)
        if form.stateful and state is None:
            raise ValueError(
                "this learner's loss is stateful: it needs the initial model state, state=..."
            )
        # f and eval_fn are in canonical form: stateful, with aux, told the step.
        objective = f if proximal is None else _proximal(f, meta_params.params, proximal)
        params, info = adapt(
            objective,
            meta_params.params,
            support,
            inner_opt,
            num_steps,
            hparams=per_step_slice(meta_params.hparams, num_steps),
            first_order=first_order,
            eval_fn=eval_fn,
            remat=remat,
            adapt_mask=adapt_mask,
            has_aux=True,
            stateful=True,
            takes_step=True,
            state={} if state is None else state,
        )
        return params, info if form.stateful else info._replace(state=None)

    return FineTuning(adapt=learner_adapt, run=run)


def query_score(f: CanonicalLoss, params: Params, state: ModelState, query: Batch, step: int):
    """``(loss, aux)`` of the query set, scored as after inner step ``step``."""
    loss, (_, aux) = f(params, state, query, jnp.asarray(step, jnp.int32))
    return loss, aux


def _proximal(f: CanonicalLoss, anchor: Params, lam: float) -> CanonicalLoss:
    """``f`` plus ``lam / 2 ||params - anchor||^2``, in canonical form."""

    def proximal_loss(params, state, batch, step):
        loss, out = f(params, state, batch, step)
        sq = sum(
            jnp.vdot(p - a, p - a)
            for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(anchor), strict=True)
        )
        return loss + (0.5 * lam * sq).astype(loss.dtype), out

    return proximal_loss
