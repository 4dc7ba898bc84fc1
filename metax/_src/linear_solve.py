"""Conjugate gradient and Hessian-vector products over pytrees (iMAML's linear solve)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metax._src.base import Params, PyTree

HVP_MODES = ("reverse", "forward")


def vdot(a: PyTree, b: PyTree) -> jax.Array:
    """``<a, b>`` over all leaves, accumulated in at least float32."""
    parts = [
        jnp.vdot(x.astype(acc), y.astype(acc))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        for acc in [jnp.promote_types(x.dtype, jnp.float32)]
    ]
    return sum(parts[1:], parts[0])


def relative_norm(tree: PyTree, reference: PyTree) -> jax.Array:
    """``||tree|| / ||reference||``, or ``||tree||`` when ``reference`` is 0."""
    denominator = jnp.sqrt(vdot(reference, reference))
    return jnp.sqrt(vdot(tree, tree)) / jnp.where(denominator > 0, denominator, 1)


def axpy(alpha: jax.Array, x: PyTree, y: PyTree) -> PyTree:
    """``alpha * x + y`` leaf by leaf, in each leaf's dtype."""
    return jax.tree.map(lambda a, b: (alpha * a + b).astype(b.dtype), x, y)


class _CGState(NamedTuple):
    iteration: jax.Array
    x: PyTree
    r: PyTree
    p: PyTree
    rr: jax.Array  # <r, r>
    residuals: jax.Array
    positive: jax.Array  # every curvature p^T A p so far was > 0


def conjugate_gradient(
    matvec: Callable[[PyTree], PyTree], b: PyTree, *, max_steps: int, tol: float
) -> tuple[PyTree, jax.Array, jax.Array]:
    """Solves ``A x = b`` for a symmetric positive-definite ``A`` given as ``matvec``.

    Plain conjugate gradient over pytrees from ``x = 0``, in a ``lax.while_loop`` that
    stops after ``max_steps`` iterations, once ``||r|| <= tol ||b||``, or at the first
    direction of non-positive curvature (``A`` not positive definite there: the step
    is not taken, and the residual stays large). Not differentiable in reverse mode
    (nothing differentiates through it here).

    Args:
      matvec: ``x -> A x`` on pytrees shaped like ``b``.
      b: the right-hand side.
      max_steps: iteration budget (>= 1).
      tol: relative residual at which to stop (>= 0).

    Returns:
      ``(x, residuals, iterations)``: the solution, the recurrence residual
      ``||r_k|| / ||b||`` after each iteration ``k`` (``(max_steps,)``, iterations not
      run repeat the last value) and the number of iterations run.
    """
    rr = vdot(b, b)
    scale = jnp.sqrt(rr)
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))

    def cond(s: _CGState) -> jax.Array:
        return (s.iteration < max_steps) & (jnp.sqrt(s.rr) > tol * scale) & s.positive

    def body(s: _CGState) -> _CGState:
        ap = matvec(s.p)
        curvature = vdot(s.p, ap)
        positive = curvature > 0
        alpha = jnp.where(positive, s.rr / jnp.where(positive, curvature, 1), 0)
        x = axpy(alpha, s.p, s.x)
        r = axpy(-alpha, ap, s.r)
        rr = vdot(r, r)
        # s.rr > 0 here, except in lanes of a vmapped loop that already stopped (their
        # results are discarded); the guard keeps NaNs out of those (jax_debug_nans).
        p = axpy(rr / jnp.where(s.rr > 0, s.rr, 1), s.p, r)
        residuals = s.residuals.at[s.iteration].set(jnp.sqrt(rr) / scale)
        return _CGState(s.iteration + 1, x, r, p, rr, residuals, positive)

    zeros = jax.tree.map(jnp.zeros_like, b)
    init = _CGState(jnp.int32(0), zeros, b, b, rr, jnp.zeros(max_steps, rr.dtype), jnp.bool_(True))
    s = jax.lax.while_loop(cond, body, init)
    ran = jnp.arange(max_steps) < s.iteration
    residuals = jnp.where(ran, s.residuals, jnp.sqrt(s.rr) / scale)
    return s.x, residuals, s.iteration


def gradient_and_hvp(
    f: Callable[[Params], jax.Array], params: Params, *, mode: str = "reverse"
) -> tuple[Params, Callable[[Params], Params]]:
    """The gradient of a scalar ``f`` at ``params`` and ``u -> H u``, ``H`` its Hessian there.

    Both modes linearise the gradient once and apply the linearisation to each ``u``,
    so a product costs about one gradient evaluation either way.

    * ``reverse``: reverse-over-reverse, the VJP of ``jax.grad(f)``, which is ``H u``
      because ``H`` is symmetric. It goes through every ``jax.custom_vjp`` whose
      backward rule is itself reverse-differentiable (as second-order MAML needs
      too), e.g. ``metax.nn``'s ``patches`` convolutions, the default on CPU.
    * ``forward``: forward-over-reverse, ``jax.linearize(jax.grad(f), params)``; it
      goes through ``lax.while_loop`` (reverse mode does not), but not through any
      ``jax.custom_vjp``: JAX raises ``TypeError: can't apply forward-mode autodiff
      (jvp) to a custom_vjp function`` (when the product is evaluated or lowered,
      not when it is traced, so no mode can be picked automatically at trace time).

    Args:
      f: ``params -> scalar``.
      params: where to evaluate.
      mode: ``reverse`` or ``forward``.

    Returns:
      ``(grad, hvp)``.
    """
    if mode not in HVP_MODES:
        raise ValueError(f"hvp must be one of {HVP_MODES}, got {mode!r}.")
    grad_f = jax.grad(f)
    if mode == "forward":
        return jax.linearize(grad_f, params)
    grad, vjp = jax.vjp(grad_f, params)
    return grad, lambda u: vjp(u)[0]
