"""iMAML (Rajeswaran et al., 2019): meta-gradients by implicit differentiation."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.adapt import EvalFn, adapt
from metax._src.base import (
    AdaptInfo,
    Batch,
    LossFn,
    MetaLearner,
    MetaParams,
    ModelState,
    Params,
    PyTree,
    Task,
    TaskAux,
)
from metax._src.loss_forms import CanonicalLoss, canonical_loss

HVP_MODES = ("reverse", "forward")


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


def _vdot(a: PyTree, b: PyTree) -> jax.Array:
    """``<a, b>`` over all leaves, accumulated in at least float32."""
    parts = [
        jnp.vdot(x.astype(acc), y.astype(acc))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        for acc in [jnp.promote_types(x.dtype, jnp.float32)]
    ]
    return sum(parts[1:], parts[0])


def _relative_norm(tree: PyTree, reference: PyTree) -> jax.Array:
    """``||tree|| / ||reference||``, or ``||tree||`` when ``reference`` is 0."""
    denominator = jnp.sqrt(_vdot(reference, reference))
    return jnp.sqrt(_vdot(tree, tree)) / jnp.where(denominator > 0, denominator, 1)


def _axpy(alpha: jax.Array, x: PyTree, y: PyTree) -> PyTree:
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
    rr = _vdot(b, b)
    scale = jnp.sqrt(rr)
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))

    def cond(s: _CGState) -> jax.Array:
        return (s.iteration < max_steps) & (jnp.sqrt(s.rr) > tol * scale) & s.positive

    def body(s: _CGState) -> _CGState:
        ap = matvec(s.p)
        curvature = _vdot(s.p, ap)
        positive = curvature > 0
        alpha = jnp.where(positive, s.rr / jnp.where(positive, curvature, 1), 0)
        x = _axpy(alpha, s.p, s.x)
        r = _axpy(-alpha, ap, s.r)
        rr = _vdot(r, r)
        # s.rr > 0 here, except in lanes of a vmapped loop that already stopped (their
        # results are discarded); the guard keeps NaNs out of those (jax_debug_nans).
        p = _axpy(rr / jnp.where(s.rr > 0, s.rr, 1), s.p, r)
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


def _proximal(f: CanonicalLoss, anchor: Params, lam: float) -> CanonicalLoss:
    """``f`` plus ``lam / 2 ||params - anchor||^2``, in canonical form."""

    def proximal_loss(params, state, batch, step):
        loss, out = f(params, state, batch, step)
        diff = jax.tree.map(jnp.subtract, params, anchor)
        return loss + 0.5 * lam * _vdot(diff, diff).astype(loss.dtype), out

    return proximal_loss


def imaml(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    lam: float,
    cg_steps: int,
    cg_tol: float = 1e-5,
    hvp: str = "reverse",
    has_aux: bool = False,
    stateful: bool = False,
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
      hvp: how Hessian-vector products are taken, both by linearising the gradient
        once: ``reverse`` (reverse-over-reverse; goes through every ``jax.custom_vjp``
        with a differentiable backward rule, e.g. ``metax.nn``'s ``patches``
        convolutions) or ``forward`` (forward-over-reverse; through
        ``lax.while_loop`` but through no ``jax.custom_vjp``).
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch, step)`` threads model state; pass
        ``state=`` to ``loss`` and ``adapt``.
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
    if hvp not in HVP_MODES:
        raise ValueError(f"hvp must be one of {HVP_MODES}, got {hvp!r}.")
    lam = float(lam)
    f = canonical_loss(loss_fn, has_aux=has_aux, stateful=stateful)
    score = canonical_loss(
        loss_fn if query_loss_fn is None else query_loss_fn, has_aux=has_aux, stateful=stateful
    )

    def init(params: Params) -> MetaParams:
        return MetaParams(params=params, hparams=None)

    def solve_inner(
        theta: Params, support: Batch, *, num_steps: int, state: ModelState, eval_fn=None
    ) -> tuple[Params, AdaptInfo]:
        # adapt gets the canonical form as a stateful loss with aux; () stands in for
        # the state of a stateless loss (canonical_loss passes it through).
        if eval_fn is not None and not stateful:
            user_eval_fn: EvalFn = eval_fn
            eval_fn = lambda p, s, step: user_eval_fn(p)  # noqa: E731
        phi, info = adapt(
            _proximal(f, theta, lam),
            theta,
            support,
            inner_opt,
            num_steps,
            eval_fn=eval_fn,
            has_aux=True,
            stateful=True,
            state=state if stateful else (),
        )
        return phi, info if stateful else info._replace(state=None)

    trained_steps = num_steps

    def learner_adapt(
        meta_params: MetaParams,
        support: Batch,
        *,
        num_steps: int | None = None,
        state: ModelState = None,
        step_weights: jax.Array | None = None,
        eval_fn: EvalFn | None = None,
    ) -> tuple[Params, AdaptInfo]:
        del step_weights
        steps = trained_steps if num_steps is None else num_steps
        return solve_inner(
            meta_params.params, support, num_steps=steps, state=state, eval_fn=eval_fn
        )

    def loss(
        meta_params: MetaParams,
        task: Task,
        *,
        state: ModelState = None,
        step_weights: jax.Array | None = None,
    ) -> tuple[jax.Array, TaskAux]:
        del step_weights
        if not isinstance(meta_params, MetaParams):
            raise TypeError(
                "meta_params must be a metax.MetaParams (from learner.init), got "
                f"{type(meta_params).__name__}."
            )
        theta = meta_params.params
        # Everything below is a constant of the differentiation: no tape is kept for
        # the inner loop, and the gradient enters only through _with_gradient.
        anchor, task, state = jax.lax.stop_gradient((theta, task, state))
        phi, info = solve_inner(anchor, task.support, num_steps=num_steps, state=state)
        last = jnp.asarray(num_steps - 1, jnp.int32)
        (query_loss, (_, query_aux)), query_grad = jax.value_and_grad(score, has_aux=True)(
            phi, info.state, task.query, last
        )
        support_grad, hessian = gradient_and_hvp(
            lambda p: f(p, info.state, task.support, last)[0], phi, mode=hvp
        )

        def matvec(u):  # (I + H / lam) u
            return _axpy(1.0 / lam, hessian(u), u)

        direction, residuals, iterations = conjugate_gradient(
            matvec, query_grad, max_steps=cg_steps, tol=cg_tol
        )
        error = _axpy(-1.0, matvec(direction), query_grad)
        stationarity = _axpy(lam, jax.tree.map(jnp.subtract, phi, anchor), support_grad)
        solver = ImplicitInfo(
            cg_residual=_relative_norm(error, query_grad),
            cg_residuals=residuals,
            cg_iterations=iterations,
            inner_grad_norm=jnp.sqrt(_vdot(stationarity, stationarity)),
        )
        value = _with_gradient(query_loss, theta, direction)
        aux = TaskAux(adapt=info, query_loss=query_loss, query_aux=query_aux, solver=solver)
        return value, aux

    return MetaLearner(init=init, loss=loss, adapt=learner_adapt)
