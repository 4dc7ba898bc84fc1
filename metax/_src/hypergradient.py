"""SGD whose learning rate follows its hypergradient (Baydin et al., 2018)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.base import Params, PyTree


class HypergradientState(NamedTuple):
    """State of :func:`hypergradient_sgd`.

    Attributes:
      learning_rate: the rate of the last update (a scalar, float32 or wider).
      previous_grad: the gradient of the last update (zeros before the first).
      hypergradient: ``d loss(params) / d learning_rate`` of the last update, i.e.
        ``-<g_t, g_{t-1}>``: how the loss at the current parameters changes with the
        rate of the step that led to them (0 at the first update).
    """

    learning_rate: jax.Array
    previous_grad: PyTree
    hypergradient: jax.Array


def hypergradient_sgd(learning_rate: float, hyper_lr: float) -> optax.GradientTransformation:
    """SGD-HD: SGD whose learning rate is learned online by hypergradient descent.

    Baydin et al. (2018), "Online Learning Rate Adaptation with Hypergradient Descent";
    Alpha-MAML (Behl et al., 2019) uses it for MAML's rates. The update that led to the
    current parameters was ``params = previous - lr * g_{t-1}``, so the derivative of
    the loss at the current parameters w.r.t. that rate is ``h_t = -<g_t, g_{t-1}>``,
    with ``g_t`` the gradient passed now. Each update first takes a gradient step on
    the rate, ``lr <- lr - hyper_lr * h_t = lr + hyper_lr * <g_t, g_{t-1}>``, then
    returns ``-lr * g_t``. The rate grows while successive gradients agree and shrinks
    when they oppose (overshooting). It is not clipped: a ``hyper_lr`` large for the
    problem's scale can drive it negative. ``hyper_lr=0`` is plain SGD.

    As the outer optimizer of :func:`metax.meta_step` it adapts the meta learning
    rate; the rate is one scalar shared by every leaf of ``MetaParams``.

    Args:
      learning_rate: the initial rate (``>= 0``).
      hyper_lr: the rate of the rate, ``beta`` in the paper (``>= 0``).

    Returns:
      An ``optax.GradientTransformation`` whose state is a :class:`HypergradientState`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, metax
      >>> opt = metax.hypergradient_sgd(0.1, hyper_lr=0.01)
      >>> params = jnp.array([2.0, -1.0])
      >>> state = opt.init(params)
      >>> for _ in range(2):  # loss = ||params||^2: the gradients agree, the rate grows
      ...     updates, state = opt.update(2 * params, state)
      ...     params = optax.apply_updates(params, updates)
      >>> round(float(state.learning_rate), 4)  # 0.1 + 0.01 * <[3.2, -1.6], [4, -2]>
      0.26
    """
    validation.check_real(learning_rate, what="learning_rate")
    validation.check_real(hyper_lr, what="hyper_lr")

    def init(params: Params) -> HypergradientState:
        dtype = jnp.promote_types(jnp.result_type(*jax.tree.leaves(params)), jnp.float32)
        return HypergradientState(
            learning_rate=jnp.asarray(learning_rate, dtype),
            previous_grad=jax.tree.map(jnp.zeros_like, params),
            hypergradient=jnp.zeros((), dtype),
        )

    def update(grads, state: HypergradientState, params=None):
        del params
        dtype = state.learning_rate.dtype
        agreement = sum(
            jnp.vdot(g.astype(dtype), p.astype(dtype))
            for g, p in zip(
                jax.tree.leaves(grads), jax.tree.leaves(state.previous_grad), strict=True
            )
        )
        hypergradient = -jnp.asarray(agreement, dtype)
        lr = state.learning_rate - hyper_lr * hypergradient
        updates = jax.tree.map(lambda g: (-lr * g).astype(g.dtype), grads)
        return updates, HypergradientState(lr, grads, hypergradient)

    return optax.GradientTransformation(init, update)
