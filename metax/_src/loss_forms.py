"""One internal calling convention for every form of loss function.

Users write ``loss_fn(params, batch)``, optionally returning aux, optionally
threading model state, optionally told the inner step index (see
:data:`metax.LossFn`). The core calls every loss through :func:`canonical_loss`,
whose form is always ``f(params, state, batch, step) -> (loss, (new_state, aux))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

CanonicalLoss = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Any, Any]]]


class LossForm(NamedTuple):
    """How a loss function is called and what it returns.

    Attributes:
      has_aux: it returns ``(loss, aux)``.
      stateful: it takes the model state after the parameters,
        ``loss_fn(params, state, batch, ...)``, and returns its new state:
        ``(loss, new_state)``, or ``(loss, (new_state, aux))`` with ``has_aux``.
      takes_step: it takes the inner step index (an int32 scalar) as its last
        argument, ``loss_fn(params, [state,] batch, step)``, e.g. to pick per-step
        batch-norm weights.
    """

    has_aux: bool = False
    stateful: bool = False
    takes_step: bool = False


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


def _expected_output(form: LossForm) -> str:
    if form.stateful:
        return "(loss, (new_state, aux))" if form.has_aux else "(loss, new_state)"
    return "(loss, aux)"


def canonical_loss(loss_fn: Callable[..., Any], form: LossForm) -> CanonicalLoss:
    """Wraps ``loss_fn`` of the given form into ``(params, state, batch, step)`` form.

    Args:
      loss_fn: the user's loss function.
      form: how it is called and what it returns.

    Returns:
      ``f(params, state, batch, step) -> (loss, (new_state, aux))``; without
      ``stateful`` the state passes through unchanged.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}.")
    flags = f"has_aux={form.has_aux}, stateful={form.stateful}"

    def f(params, state, batch, step):
        args = (params, state, batch) if form.stateful else (params, batch)
        out = loss_fn(*args, step) if form.takes_step else loss_fn(*args)
        if not (form.has_aux or form.stateful):
            if isinstance(out, tuple):
                raise ValueError(
                    f"loss_fn returned a tuple of length {len(out)}; if it is (loss, aux), "
                    "pass has_aux=True."
                )
            loss, new_state, aux = out, state, None
        else:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError(
                    f"loss_fn must return {_expected_output(form)} with {flags}; "
                    f"got {type(out).__name__}."
                )
            loss, rest = out
            if form.stateful and form.has_aux:
                if not (isinstance(rest, tuple) and len(rest) == 2):
                    raise ValueError(
                        "a stateful loss_fn with has_aux=True must return (loss, (new_state, aux)); "
                        f"got (loss, {type(rest).__name__})."
                    )
                new_state, aux = rest
            elif form.stateful:
                new_state, aux = rest, None
            else:
                new_state, aux = state, rest
        check_scalar_loss(loss)
        return loss, (new_state, aux)

    return f
