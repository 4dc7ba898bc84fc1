"""ANIL, BOIL and CAVIA: MAML whose inner loop adapts only some parameters.

Each is :func:`metax.maml` with an ``adapt_mask``: the fast parameters the inner loop
adapts, the rest (slow) learned by the outer loop only; meta-gradients of both parts
stay exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from metax._src.base import LossFn, MetaLearner, MetaParams, Params, PyTree, Task
from metax._src.maml import maml

Mask = PyTree | Callable[[Params], PyTree]


def _resolve(mask: Mask, params: Params) -> PyTree:
    return mask(params) if callable(mask) else mask


def _fast(mask: Mask, adapt_mask: Mask | None, *, negate: bool = False) -> Callable:
    """``mask`` (or its negation) within ``adapt_mask``, as a function of the parameters."""

    def resolve(params: Params) -> PyTree:
        chosen = jax.tree.map(lambda m: bool(m) != negate, _resolve(mask, params))
        if adapt_mask is None:
            return chosen
        return jax.tree.map(lambda a, b: a and bool(b), chosen, _resolve(adapt_mask, params))

    return resolve


def anil(
    loss_fn: LossFn, *, head_mask: Mask, adapt_mask: Mask | None = None, **maml_options: Any
) -> MetaLearner:
    """ANIL (Raghu et al., 2020): Almost No Inner Loop, only the head adapts.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      head_mask: ``True`` for the head's parameters (a pytree of booleans shaped like
        the parameters, or a function of them), e.g. the last ``Dense`` layer.
      adapt_mask: parameters the inner loop may adapt at all (e.g. all but batch
        norm); the chosen part is taken within it. ``None``: all.
      **maml_options: :func:`metax.maml`'s options (``inner_opt`` and ``num_steps``
        required).

    Returns:
      A :class:`metax.MetaLearner`.
    """
    return maml(loss_fn, adapt_mask=_fast(head_mask, adapt_mask), **maml_options)


def boil(
    loss_fn: LossFn, *, head_mask: Mask, adapt_mask: Mask | None = None, **maml_options: Any
) -> MetaLearner:
    """BOIL (Oh et al., 2021): Body Only update in Inner Loop, the head stays fixed.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      head_mask: ``True`` for the head's parameters, which the inner loop leaves alone.
      adapt_mask: parameters the inner loop may adapt at all (e.g. all but batch
        norm); the chosen part is taken within it. ``None``: all.
      **maml_options: :func:`metax.maml`'s options (``inner_opt`` and ``num_steps``
        required).

    Returns:
      A :class:`metax.MetaLearner`.
    """
    return maml(loss_fn, adapt_mask=_fast(head_mask, adapt_mask, negate=True), **maml_options)


def cavia(
    loss_fn: LossFn, *, context_mask: Mask, adapt_mask: Mask | None = None, **maml_options: Any
) -> MetaLearner:
    """CAVIA (Zintgraf et al., 2019): only context parameters adapt, from zero for each task.

    The context (e.g. a vector concatenated to the network's input) is reset to zero
    at the start of every task's inner loop, in training and in ``adapt``, and is the
    only thing the inner loop changes; the outer loop learns the rest (the context's
    own initial value never matters: it gets zero meta-gradient).

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      context_mask: ``True`` for the context parameters.
      adapt_mask: parameters the inner loop may adapt at all (e.g. all but batch
        norm); the chosen part is taken within it. ``None``: all.
      **maml_options: :func:`metax.maml`'s options (``inner_opt`` and ``num_steps``
        required).

    Returns:
      A :class:`metax.MetaLearner`.

    Raises:
      ValueError: the mask selects no parameter (CAVIA needs a context).
    """
    learner = maml(loss_fn, adapt_mask=_fast(context_mask, adapt_mask), **maml_options)

    def reset(meta_params: MetaParams) -> MetaParams:
        mask = _resolve(context_mask, meta_params.params)
        params = jax.tree.map(lambda p, m: jnp.zeros_like(p) if m else p, meta_params.params, mask)
        return meta_params._replace(params=params)

    def loss(meta_params: MetaParams, task: Task, **extra: Any):
        return learner.loss(reset(meta_params), task, **extra)

    def adapt(meta_params: MetaParams, support: Any, **extra: Any):
        return learner.adapt(reset(meta_params), support, **extra)

    return learner._replace(loss=loss, adapt=adapt)
