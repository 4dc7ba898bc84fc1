"""iMAML (Rajeswaran et al., 2019): meta-gradients by implicit differentiation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.base import (
    LossFn,
    MetaLearner,
    MetaParams,
    ModelState,
    Params,
    Task,
    TaskAux,
)
from metax._src.learner import fine_tuning, make_learner
from metax._src.linear_solve import (
    HVP_MODES,
    axpy,
    conjugate_gradient,
    gradient_and_hvp,
    relative_norm,
    vdot,
)
from metax._src.loss_forms import LossForm, canonical_loss


class ImplicitInfo(NamedTuple):
    """How well the two premises of an implicit meta-gradient hold, for one task.

    The implicit meta-gradient ``v = (I + H / lam)^{-1} g`` (``g`` the query gradient,
    ``H`` the support-loss Hessian at the adapted parameters) is the exact gradient
    when the inner loop reached a stationary point of its proximal objective and the
    linear system is solved. Each field measures one of the two.

    Attributes:
      cg_residual: relative residual ``||g - (I + H / lam) v|| / ||g||`` of the
        returned ``v``, recomputed with one more Hessian-vector product (not read from
        CG's recurrence, which can drift below the true residual); 0 when ``g = 0``.
      cg_residuals: ``(cg_steps,)`` relative residual of CG's recurrence after each
        iteration. Iterations not run (CG met ``cg_tol``, or met non-positive
        curvature ``p^T (I + H / lam) p <= 0`` and stopped) repeat the last value.
      cg_iterations: iterations CG ran (int32), at most ``cg_steps``.
      inner_grad_norm: ``||grad L_support(phi) + lam (phi - theta)||``, the gradient
        norm of the proximal inner objective at the adapted parameters ``phi`` (0 at
        an exact inner solution).
    """

    cg_residual: jax.Array
    cg_residuals: jax.Array
    cg_iterations: jax.Array
    inner_grad_norm: jax.Array


@jax.custom_vjp
def _with_gradient(value: jax.Array, params: Params, gradient: Params) -> jax.Array:
    """``value``, whose derivative w.r.t. ``params`` is ``gradient`` (w.r.t. the rest, 0)."""
    del params, gradient
    return value


def _with_gradient_fwd(value, params, gradient):
    del params
    return value, gradient


def _with_gradient_bwd(gradient, cotangent):
    return None, jax.tree.map(lambda g: (cotangent * g).astype(g.dtype), gradient), None


_with_gradient.defvjp(_with_gradient_fwd, _with_gradient_bwd)


def imaml(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    lam: float,
    cg_steps: int,
    cg_tol: float = 1e-5,
    cg_damping: float = 0.0,
    lam_damping: float = 0.0,
    hvp: str = "reverse",
    has_aux: bool = False,
    stateful: bool = False,
    takes_step: bool = False,
    query_loss_fn: LossFn | None = None,
) -> MetaLearner:
    """Implicit MAML (Rajeswaran et al., 2019): meta-gradients without unrolling.

    A task's inner problem is proximal: ``phi = argmin L_support(phi) + lam/2
    ||phi - theta||^2``, solved approximately by ``num_steps`` steps of ``inner_opt``
    from the initial parameters ``theta``. The outer loss is ``L_query(phi)``; at a
    stationary ``phi`` the implicit function theorem gives its gradient w.r.t. ``theta``
    as ``(I + H / lam)^{-1} grad L_query(phi)``, ``H`` the Hessian of ``L_support`` at
    ``phi``, which ``loss`` computes with ``cg_steps`` iterations of conjugate gradient
    on Hessian-vector products. The inner loop is never differentiated, so memory does
    not grow with ``num_steps``.

    ``loss`` solves the linear system in its forward pass and hands the solution to
    its backward pass (a ``jax.custom_vjp``), so the residuals it reports in
    ``TaskAux.solver`` (an :class:`metax.ImplicitInfo`) are those of the gradient it
    returns: a CG or an inner loop that did not converge shows there. The gradient
    is exact up to those two residuals. Only ``meta_params.params`` receives it: the
    task data, the initial model state and anything ``loss_fn`` closes over are
    constants of the meta-loss (zero gradient), and forward-mode differentiation of
    ``loss`` raises. ``I + H / lam`` is positive definite, as CG needs, when ``lam``
    exceeds minus the smallest eigenvalue of ``H`` (for any ``lam`` if the support
    loss is convex); where it is not, CG stops and the residual stays large.

    ``H`` and the inner stationarity check use the support loss as the last inner
    step scores it (step index ``num_steps - 1``, the final model state).
    ``AdaptInfo.support_loss`` is the proximal objective, the loss the inner steps
    descend. ``adapt`` (test-time fine-tuning) is the same proximal inner loop, with
    ``num_steps`` overridable. Like every learner, ``loss`` and ``adapt`` accept
    ``state=`` and ``step_weights=`` and ignore what they do not use.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      inner_opt: any Optax transformation; it descends the proximal objective.
      num_steps: inner steps during meta-training (``adapt`` can use more).
      lam: strength of the proximal term (``lambda`` in the paper), ``> 0``. Larger
        keeps ``phi`` nearer ``theta`` and conditions the linear system better.
      cg_steps: most conjugate-gradient iterations (``>= 1``).
      cg_tol: CG stops once its residual is at most ``cg_tol`` times ``||grad
        L_query(phi)||`` (``>= 0``; 0 runs all ``cg_steps``).
      cg_damping: ``>= 0``; CG solves ``((1 + cg_damping) I + H / (lam + lam_damping))
        v = grad L_query(phi)``. Both dampings 0 (the default) is the exact implicit
        gradient; positive ones trade exactness for a better conditioned system (a
        Hessian with eigenvalues below ``-lam``, e.g. through batch norm over a few
        support images, makes the exact system indefinite). Rajeswaran et al.'s code
        runs Omniglot with ``cg_damping=1`` and ``lam_damping=10``.
      lam_damping: ``>= 0``, added to ``lam`` in the Hessian's weight of that system
        only (the inner problem keeps ``lam``).
      hvp: how Hessian-vector products are taken, both by linearising the gradient
        once: ``reverse`` (reverse-over-reverse; goes through every ``jax.custom_vjp``
        with a differentiable backward rule, e.g. ``metax.nn``'s ``patches``
        convolutions) or ``forward`` (forward-over-reverse; through
        ``lax.while_loop`` but through no ``jax.custom_vjp``).
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch)`` threads model state; pass
        ``state=`` to ``loss`` and ``adapt``.
      takes_step: ``loss_fn`` takes the inner step index as its last argument.
      query_loss_fn: scores the query set instead of ``loss_fn`` (same form), e.g. a
        model in evaluation mode.

    Returns:
      A :class:`metax.MetaLearner`.

    Raises:
      TypeError, ValueError: when it is built, for a non-int or non-positive
        ``num_steps`` or ``cg_steps``, a non-positive ``lam``, a negative ``cg_tol``
        or an unknown ``hvp``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, metax
      >>> loss = lambda w, b: jnp.mean((w - b) ** 2)
      >>> learner = metax.imaml(loss, inner_opt=optax.sgd(0.25), num_steps=30,
      ...                       lam=1.0, cg_steps=2)
      >>> task = metax.Task(support=jnp.full(3, 4.0), query=jnp.full(3, 4.0))
      >>> meta_grad = jax.grad(lambda m: learner.loss(m, task), has_aux=True)
      >>> g, aux = meta_grad(learner.init(jnp.float32(0.0)))
      >>> round(float(g.params), 4)  # (1 + 2 / lam)^-1 * 2 * (phi - 4), phi = 8 / 3
      -0.8889
      >>> bool(aux.solver.cg_residual < 1e-6), int(aux.solver.cg_iterations)
      (True, 1)
    """
    validation.check_num_steps(num_steps)
    validation.check_num_steps(cg_steps, what="cg_steps")
    validation.check_real(lam, what="lam", positive=True)
    validation.check_real(cg_tol, what="cg_tol")
    validation.check_real(cg_damping, what="cg_damping")
    validation.check_real(lam_damping, what="lam_damping")
    if hvp not in HVP_MODES:
        raise ValueError(f"hvp must be one of {HVP_MODES}, got {hvp!r}.")
    lam, cg_damping, lam_damping = float(lam), float(cg_damping), float(lam_damping)
    form = LossForm(has_aux, stateful, takes_step)
    inner = fine_tuning(loss_fn, form, inner_opt=inner_opt, num_steps=num_steps, proximal=lam)
    f = canonical_loss(loss_fn, form)
    score = canonical_loss(loss_fn if query_loss_fn is None else query_loss_fn, form)

    def task_loss(meta_params: MetaParams, task: Task, state: ModelState, step_weights):
        del step_weights  # one query loss, after the last step
        theta = meta_params.params
        # Everything below is a constant of the differentiation: no tape is kept for
        # the inner loop, and the gradient enters only through _with_gradient.
        anchor, task, state = jax.lax.stop_gradient((theta, task, state))
        phi, info = inner.run(MetaParams(anchor), task.support, num_steps=num_steps, state=state)
        last = jnp.asarray(num_steps - 1, jnp.int32)
        (query_loss, (_, query_aux)), query_grad = jax.value_and_grad(score, has_aux=True)(
            phi, info.state, task.query, last
        )
        support_grad, hessian = gradient_and_hvp(
            lambda p: f(p, info.state, task.support, last)[0], phi, mode=hvp
        )

        def matvec(u):  # ((1 + cg_damping) I + H / (lam + lam_damping)) u
            return axpy(cg_damping, u, axpy(1.0 / (lam + lam_damping), hessian(u), u))

        direction, residuals, iterations = conjugate_gradient(
            matvec, query_grad, max_steps=cg_steps, tol=cg_tol
        )
        error = axpy(-1.0, matvec(direction), query_grad)
        stationarity = axpy(lam, jax.tree.map(jnp.subtract, phi, anchor), support_grad)
        solver = ImplicitInfo(
            cg_residual=relative_norm(error, query_grad),
            cg_residuals=residuals,
            cg_iterations=iterations,
            inner_grad_norm=jnp.sqrt(vdot(stationarity, stationarity)),
        )
        value = _with_gradient(query_loss, theta, direction)
        aux = TaskAux(adapt=info, query_loss=query_loss, query_aux=query_aux, solver=solver)
        return value, aux

    return make_learner(task_loss, inner)
