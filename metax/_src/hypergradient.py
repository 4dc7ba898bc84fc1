"""Optimizers whose learning rate follows its hypergradient (Baydin et al., 2018)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.base import Params, PyTree


class HypergradientState(NamedTuple):
    """State of :func:`hypergradient`.

    Attributes:
      learning_rate: the rate of the last update (a scalar, float32 or wider).
      previous_direction: the direction ``u`` of the last update, ``-lr * u`` (zeros
        before the first); for SGD-HD the last gradient.
      hypergradient: ``d loss(params) / d learning_rate`` of the last update, i.e.
        ``-<g_t, u_{t-1}>``: how the loss at the current parameters changes with the
        rate of the step that led to them (0 at the first update).
      direction_state: the state of the direction's transformation.
    """

    learning_rate: jax.Array
    previous_direction: PyTree
    hypergradient: jax.Array
    direction_state: optax.OptState


def hypergradient(
    direction: optax.GradientTransformation, learning_rate: float, hyper_lr: float
) -> optax.GradientTransformation:
    """An optimizer whose learning rate is learned online by hypergradient descent.

    Baydin et al. (2018), "Online Learning Rate Adaptation with Hypergradient Descent";
    Alpha-MAML (Behl et al., 2019) uses it for MAML's rates. ``direction`` maps the
    gradient to an update direction ``u_t`` (``optax.identity()``: SGD;
    ``optax.scale_by_adam()``: Adam), and the update is ``-lr * u_t``. The update that
    led to the current parameters was ``params = previous - lr * u_{t-1}``, so the
    derivative of the loss at the current parameters w.r.t. that rate is
    ``h_t = -<g_t, u_{t-1}>``, with ``g_t`` the gradient passed now. Each update first
    takes a gradient step on the rate, ``lr <- lr - hyper_lr * h_t``, then returns
    ``-lr * u_t``. The rate grows while successive steps agree and shrinks when they
    oppose (overshooting). It is not clipped: a ``hyper_lr`` large for the problem's
    scale can drive it negative. ``hyper_lr=0`` is the plain optimizer.

    As the outer optimizer of :func:`metax.meta_step` it adapts the meta learning
    rate; the rate is one scalar shared by every leaf of ``MetaParams``.

    Args:
      direction: the update direction's transformation (its output is scaled by ``-lr``).
      learning_rate: the initial rate (``>= 0``).
      hyper_lr: the rate of the rate, ``beta`` in the paper (``>= 0``).

    Returns:
      An ``optax.GradientTransformation`` whose state is a :class:`HypergradientState`.
    """
    validation.check_real(learning_rate, what="learning_rate")
    validation.check_real(hyper_lr, what="hyper_lr")

    def init(params: Params) -> HypergradientState:
        dtype = jnp.promote_types(jnp.result_type(*jax.tree.leaves(params)), jnp.float32)
        return HypergradientState(
            learning_rate=jnp.asarray(learning_rate, dtype),
            previous_direction=jax.tree.map(jnp.zeros_like, params),
            hypergradient=jnp.zeros((), dtype),
            direction_state=direction.init(params),
        )

    def update(grads, state: HypergradientState, params=None):
        dtype = state.learning_rate.dtype
        leaves = zip(jax.tree.leaves(grads), jax.tree.leaves(state.previous_direction), strict=True)
        agreement = sum(jnp.vdot(g.astype(dtype), u.astype(dtype)) for g, u in leaves)
        hypergradient = -jnp.asarray(agreement, dtype)
        lr = state.learning_rate - hyper_lr * hypergradient
        step, direction_state = direction.update(grads, state.direction_state, params)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), step)
        return updates, HypergradientState(lr, step, hypergradient, direction_state)

    return optax.GradientTransformation(init, update)


def hypergradient_sgd(learning_rate: float, hyper_lr: float) -> optax.GradientTransformation:
    """SGD-HD: SGD whose rate follows its hypergradient (:func:`hypergradient`).

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
    return hypergradient(optax.identity(), learning_rate, hyper_lr)


def hypergradient_adam(
    learning_rate: float, hyper_lr: float, **adam_options: float
) -> optax.GradientTransformation:
    """Adam-HD: Adam whose rate follows its hypergradient (:func:`hypergradient`).

    Baydin et al. use ``hyper_lr`` around 1e-7 for Adam-HD: ``u`` is Adam's normalised
    step, so ``<g, u>`` is of the order of the gradient's 1-norm.

    Args:
      learning_rate: the initial rate.
      hyper_lr: the rate of the rate.
      **adam_options: ``b1``, ``b2``, ``eps`` of ``optax.scale_by_adam``.
    """
    return hypergradient(optax.scale_by_adam(**adam_options), learning_rate, hyper_lr)
