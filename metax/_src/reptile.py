"""Reptile (Nichol et al., 2018) as a surrogate loss driven by :func:`metax.meta_step`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from metax._src.base import LossFn, MetaLearner, MetaParams, ModelState, Task, TaskAux
from metax._src.learner import fine_tuning, make_learner, query_score
from metax._src.loss_forms import LossForm, canonical_loss


def reptile(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    has_aux: bool = False,
    stateful: bool = False,
    takes_step: bool = False,
    query_loss_fn: LossFn | None = None,
    adapt_mask: Any = None,
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
      stateful: ``loss_fn(params, state, batch)`` threads model state.
      takes_step: ``loss_fn`` takes the inner step index as its last argument.
      query_loss_fn: scores the (monitoring) query set instead of ``loss_fn``.
      adapt_mask: which parameters the inner loop adapts (see :func:`metax.adapt`).

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
    form = LossForm(has_aux, stateful, takes_step)
    options = {"first_order": True, "adapt_mask": adapt_mask}
    inner = fine_tuning(loss_fn, form, inner_opt=inner_opt, num_steps=num_steps, **options)
    score = canonical_loss(loss_fn if query_loss_fn is None else query_loss_fn, form)

    def task_loss(meta_params: MetaParams, task: Task, state: ModelState, step_weights):
        del step_weights  # one surrogate per task, no multi-step loss
        theta = meta_params.params
        phi, info = inner.run(meta_params, task.support, num_steps=num_steps, state=state)
        phi = jax.lax.stop_gradient(phi)
        sq = jax.tree.map(lambda t, p: jnp.sum(jnp.square(t - p)), theta, phi)
        surrogate = 0.5 * sum(jax.tree.leaves(sq))
        query_loss, query_aux = query_score(score, phi, info.state, task.query, num_steps - 1)
        return surrogate, TaskAux(adapt=info, query_loss=query_loss, query_aux=query_aux)

    return make_learner(task_loss, inner)
