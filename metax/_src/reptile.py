"""Reptile (Nichol et al., 2018) as a surrogate loss driven by :func:`metax.meta_step`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.adapt import adapt
from metax._src.base import (
    Batch,
    LossFn,
    MetaLearner,
    MetaParams,
    ModelState,
    Params,
    Task,
    TaskAux,
)
from metax._src.loss_forms import canonical_loss


def reptile(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    has_aux: bool = False,
    stateful: bool = False,
    query_loss_fn: LossFn | None = None,
) -> MetaLearner:
    """Reptile: move the initialisation towards the task-adapted parameters.

    The outer loss of a task is the surrogate ``0.5 * ||theta - stop_gradient(phi)||^2``
    where ``phi`` is ``theta`` after ``num_steps`` of ``inner_opt`` on the support
    set; its gradient is ``theta - phi``, so :func:`metax.meta_step` with
    ``optax.sgd(eps)`` is Reptile's update ``theta += eps * mean(phi - theta)``, and
    any other outer Optax optimizer works too. The query set is only scored (after
    adaptation, without gradient) for monitoring; put all of a task's training data
    in its support set.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      inner_opt: any Optax transformation, e.g. ``optax.adam(1e-3)``.
      num_steps: inner steps per task.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch, step)`` threads model state.
      query_loss_fn: scores the (monitoring) query set instead of ``loss_fn``.

    Returns:
      A :class:`metax.MetaLearner`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, metax
      >>> loss = lambda w, b: jnp.mean((w - b) ** 2)
      >>> learner = metax.reptile(loss, inner_opt=optax.sgd(0.25), num_steps=1)
      >>> task = metax.Task(support=jnp.full(2, 4.0), query=jnp.full(2, 4.0))
      >>> g = jax.grad(lambda m: learner.loss(m, task)[0])(learner.init(jnp.float32(0.0)))
      >>> float(g.params)  # theta - phi = 0 - 0.25 * 2 * 4
      -2.0
    """
    validation.check_num_steps(num_steps)
    f = canonical_loss(
        loss_fn if query_loss_fn is None else query_loss_fn, has_aux=has_aux, stateful=stateful
    )

    def init(params: Params) -> MetaParams:
        return MetaParams(params=params, hparams=None)

    def learner_adapt(
        meta_params: MetaParams,
        support: Batch,
        *,
        num_steps: int = num_steps,
        state: ModelState = None,
        eval_fn=None,
    ):
        return adapt(
            loss_fn,
            meta_params.params,
            support,
            inner_opt,
            num_steps,
            first_order=True,
            eval_fn=eval_fn,
            has_aux=has_aux,
            stateful=stateful,
            state=state,
        )

    def loss(meta_params: MetaParams, task: Task, *, state: ModelState = None):
        theta = meta_params.params
        phi, info = learner_adapt(meta_params, task.support, state=state)
        phi = jax.lax.stop_gradient(phi)
        sq = jax.tree.map(lambda t, p: jnp.sum(jnp.square(t - p)), theta, phi)
        surrogate = 0.5 * sum(jax.tree.leaves(sq))
        last = jnp.asarray(num_steps - 1, jnp.int32)
        query_loss, (_, query_aux) = f(phi, info.state, task.query, last)
        return surrogate, TaskAux(adapt=info, query_loss=query_loss, query_aux=query_aux)

    return MetaLearner(init=init, loss=loss, adapt=learner_adapt)
