"""The non-meta baseline: pre-train on pooled task data, fine-tune at test time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.adapt import adapt
from metax._src.base import (
    AdaptInfo,
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


def pretrain(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    has_aux: bool = False,
) -> MetaLearner:
    """Plain multi-task pre-training as a :class:`metax.MetaLearner` (the usual baseline).

    Its ``loss`` is ``loss_fn`` on each task's support and query sets pooled, with no
    inner loop, so :func:`metax.meta_step` trains an ordinary regression or
    classification model on data from the whole task family. Its ``adapt``
    fine-tunes exactly as a meta-learned model would be, which makes the comparison
    with MAML fair: same network, same fine-tuning, same test tasks.

    Args:
      loss_fn: ``loss_fn(params, batch)`` (or ``(loss, aux)`` with ``has_aux``).
      inner_opt: the fine-tuning optimizer used by ``adapt``.
      num_steps: default number of fine-tuning steps of ``adapt``.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      A :class:`metax.MetaLearner`; ``TaskAux.adapt`` is a dummy record of zero losses
      (there is no inner loop while training).
    """
    validation.check_num_steps(num_steps)
    f = canonical_loss(loss_fn, has_aux=has_aux, stateful=False)

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
        del state
        return adapt(
            loss_fn,
            meta_params.params,
            support,
            inner_opt,
            num_steps,
            eval_fn=eval_fn,
            has_aux=has_aux,
        )

    def loss(meta_params: MetaParams, task: Task):
        pooled = jax.tree.map(lambda s, q: jnp.concatenate([s, q]), task.support, task.query)
        value, _ = f(meta_params.params, None, pooled, None)
        query_loss, (_, query_aux) = f(meta_params.params, None, task.query, None)
        no_inner_loop = AdaptInfo(support_loss=jnp.zeros((0,), value.dtype))
        return value, TaskAux(adapt=no_inner_loop, query_loss=query_loss, query_aux=query_aux)

    return MetaLearner(init=init, loss=loss, adapt=learner_adapt)
