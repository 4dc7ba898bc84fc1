"""Meta-SGD (Li et al., 2017) and Alpha-MAML (Behl et al., 2019): learned inner rates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

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


def alpha_maml(
    loss_fn: LossFn, *, num_steps: int, init_lr: float, **maml_options: Any
) -> MetaLearner:
    """Alpha-MAML's learner (Behl et al., 2019): MAML whose inner rate is learned online.

    One inner rate per parameter leaf, shared by every inner step, held in
    ``MetaParams.hparams``: its meta-gradient is the hypergradient of the query loss
    w.r.t. the inner rate, so any outer optimizer that steps on it adapts the rate
    online. Alpha-MAML also adapts the outer rate by hypergradient descent: pair it
    with :func:`metax.hypergradient_adam` (or ``_sgd``) for the parameters, e.g.
    ``optax.partition({"params": metax.hypergradient_adam(1e-3, 1e-7), "rates":
    optax.sgd(1e-6)}, metax.MetaParams("params", "rates"))`` (labels by field).

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      num_steps: inner steps.
      init_lr: initial inner rate.
      **maml_options: :func:`metax.maml`'s other options.

    Returns:
      A :class:`metax.MetaLearner`.
    """
    learner = maml(loss_fn, inner_opt=scale_by_learned_lr(), num_steps=num_steps, **maml_options)

    def init(params: Params) -> MetaParams:
        rates = jax.tree.map(lambda p: jnp.full((1,), init_lr, jnp.result_type(p)), params)
        return learner.init(params)._replace(hparams=rates)

    return learner._replace(init=init)
