"""Meta-SGD (Li et al., 2017): a learned inner learning rate for every parameter entry."""

from __future__ import annotations

from typing import Any

from metax._src.base import LossFn, MetaLearner, MetaParams, Params
from metax._src.maml import maml
from metax._src.transforms import per_parameter_rates, scale_by_learned_lr


def meta_sgd(
    loss_fn: LossFn,
    *,
    num_steps: int,
    init_lr: float,
    per_step: bool = False,
    **maml_options: Any,
) -> MetaLearner:
    """Meta-SGD: MAML whose inner SGD rates are learned, one per parameter entry.

    ``init`` adds rates shaped like each parameter to ``MetaParams.hparams``
    (``(1, *shape)``, shared by every step; ``(num_steps, *shape)`` with
    ``per_step``), and the outer optimizer learns them with the parameters. The inner
    update is ``phi = theta - alpha * grad`` elementwise (:func:`metax.scale_by_learned_lr`).

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      num_steps: inner steps (Li et al. use 1).
      init_lr: initial value of every rate.
      per_step: learn separate rates for each inner step.
      **maml_options: :func:`metax.maml`'s other options (``first_order``,
        ``multi_step_loss``, ``has_aux``, ``stateful``, ``takes_step``,
        ``query_loss_fn``, ``adapt_mask``, ``remat``).

    Returns:
      A :class:`metax.MetaLearner`.

    Example:
      >>> import jax, jax.numpy as jnp, metax
      >>> loss = lambda w, b: jnp.sum((w - b) ** 2)
      >>> learner = metax.meta_sgd(loss, num_steps=1, init_lr=0.1)
      >>> mp = learner.init(jnp.zeros(2))
      >>> task = metax.Task(support=jnp.array([1.0, 2.0]), query=jnp.array([1.0, 2.0]))
      >>> g = jax.grad(lambda m: learner.loss(m, task)[0])(mp)
      >>> g.hparams.shape, [round(v, 2) for v in g.hparams[0].tolist()]  # d/d alpha
      ((1, 2), [-3.2, -12.8])
    """
    learner = maml(loss_fn, inner_opt=scale_by_learned_lr(), num_steps=num_steps, **maml_options)
    steps = num_steps if per_step else 1

    def init(params: Params) -> MetaParams:
        rates = per_parameter_rates(params, init_lr, num_steps=steps)
        return learner.init(params)._replace(hparams=rates)

    return learner._replace(init=init)
