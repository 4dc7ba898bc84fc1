"""The non-meta baseline: pre-train on pooled task data, fine-tune at test time."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from metax._src.base import (
    AdaptInfo,
    LossFn,
    MetaLearner,
    MetaParams,
    ModelState,
    Task,
    TaskAux,
)
from metax._src.learner import fine_tuning, make_learner, query_score
from metax._src.loss_forms import LossForm, canonical_loss


def pretrain(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    has_aux: bool = False,
    stateful: bool = False,
    takes_step: bool = False,
    adapt_mask: Any = None,
) -> MetaLearner:
    """Plain multi-task pre-training as a :class:`metax.MetaLearner` (the usual baseline).

    Its ``loss`` is ``loss_fn`` on each task's support and query sets pooled, with no
    inner loop, so :func:`metax.meta_step` trains an ordinary regression or
    classification model on data from the whole task family. Its ``adapt``
    fine-tunes exactly as a meta-learned model would be, which makes the comparison
    with MAML fair: same network, same fine-tuning, same test tasks.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      inner_opt: the fine-tuning optimizer used by ``adapt``.
      num_steps: default number of fine-tuning steps of ``adapt``.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch)`` threads model state (the pooled
        batch's new state is reported as ``TaskAux.adapt.state``).
      takes_step: ``loss_fn`` takes the inner step index as its last argument
        (step 0 while pre-training).
      adapt_mask: which parameters fine-tuning adapts (see :func:`metax.adapt`).

    Returns:
      A :class:`metax.MetaLearner`; ``TaskAux.adapt`` is a dummy record of zero losses
      (there is no inner loop while training).
    """
    form = LossForm(has_aux, stateful, takes_step)
    f = canonical_loss(loss_fn, form)
    inner = fine_tuning(
        loss_fn, form, inner_opt=inner_opt, num_steps=num_steps, adapt_mask=adapt_mask
    )

    def task_loss(meta_params: MetaParams, task: Task, state: ModelState, step_weights):
        del step_weights  # no inner loop
        pooled = jax.tree.map(lambda s, q: jnp.concatenate([s, q]), task.support, task.query)
        value, (new_state, _) = f(meta_params.params, state, pooled, jnp.int32(0))
        query_loss, query_aux = query_score(f, meta_params.params, state, task.query, 0)
        no_inner_loop = AdaptInfo(support_loss=jnp.zeros((0,), value.dtype), state=new_state)
        return value, TaskAux(adapt=no_inner_loop, query_loss=query_loss, query_aux=query_aux)

    return make_learner(task_loss, inner)
