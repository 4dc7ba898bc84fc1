"""One internal calling convention for the three forms of loss function.

Users write ``loss_fn(params, batch)`` (optionally returning aux, optionally
stateful; see :data:`metax.LossFn`). The core calls every loss through
:func:`canonical_loss`, whose form is always
``f(params, state, batch, step) -> (loss, (new_state, aux))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CanonicalLoss = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Any, Any]]]


def check_scalar_loss(loss: Any, *, what: str = "loss_fn") -> None:
    """Raises a ValueError unless ``loss`` is a real scalar (checked at trace time)."""
    shape = jnp.shape(loss)
    if shape != ():
        raise ValueError(
            f"{what} must return a scalar loss, got an array of shape {shape}. "
            "Reduce it (e.g. with .mean()) inside the loss function."
        )
    if not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
        raise ValueError(
            f"{what} must return a floating-point loss, got dtype {jnp.result_type(loss)}."
        )


def canonical_loss(loss_fn: Callable[..., Any], *, has_aux: bool, stateful: bool) -> CanonicalLoss:
    """Wraps ``loss_fn`` into the canonical ``(params, state, batch, step)`` form.

    Args:
      loss_fn: the user's loss function.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)`` (or, stateful,
        ``(loss, (new_state, aux))``).
      stateful: whether ``loss_fn`` is called as ``loss_fn(params, state, batch, step)``
        and returns its new state.

    Returns:
      ``f(params, state, batch, step) -> (loss, (new_state, aux))``.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}.")

    def f(params, state, batch, step):
        out = loss_fn(params, state, batch, step) if stateful else loss_fn(params, batch)
        expects_tuple = has_aux or stateful
        if expects_tuple:
            if not (isinstance(out, tuple) and len(out) == 2):
                form = (
                    "(loss, (new_state, aux))"
                    if (stateful and has_aux)
                    else ("(loss, new_state)" if stateful else "(loss, aux)")
                )
                raise ValueError(
                    f"loss_fn must return {form} with has_aux={has_aux}, stateful={stateful}; "
                    f"got {type(out).__name__}."
                )
            loss, rest = out
            if stateful and has_aux:
                if not (isinstance(rest, tuple) and len(rest) == 2):
                    raise ValueError(
                        "a stateful loss_fn with has_aux=True must return (loss, (new_state, aux)); "
                        f"got (loss, {type(rest).__name__})."
                    )
                new_state, aux = rest
            elif stateful:
                new_state, aux = rest, None
            else:
                new_state, aux = state, rest
        else:
            if isinstance(out, tuple):
                raise ValueError(
                    f"loss_fn returned a tuple of length {len(out)}; if it is (loss, aux), "
                    "pass has_aux=True."
                )
            loss, new_state, aux = out, state, None
        check_scalar_loss(loss)
        return loss, (new_state, aux)

    return f
