"""The inner loop: differentiable fine-tuning as a ``jax.lax.scan`` over steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.base import AdaptInfo, Batch, LossFn, ModelState, Params, PyTree
from metax._src.loss_forms import LossForm, canonical_loss, check_scalar_loss

EvalFn = Callable[..., Any]


def adapt(
    loss_fn: LossFn,
    params: Params,
    batch: Batch,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    *,
    hparams: PyTree = None,
    first_order: bool = False,
    eval_fn: EvalFn | None = None,
    remat: bool = False,
    has_aux: bool = False,
    stateful: bool = False,
    takes_step: bool = False,
    state: ModelState = None,
    adapt_mask: PyTree | Callable[[Params], PyTree] | None = None,
) -> tuple[Params, AdaptInfo]:
    """Runs ``num_steps`` steps of ``inner_opt`` on ``loss_fn(params, batch)``.

    The loop is a ``jax.lax.scan``, so it traces once whatever ``num_steps`` is, and
    it is differentiable end to end: ``jax.grad`` of anything computed from the
    adapted parameters is the exact (second-order) meta-gradient, unless
    ``first_order=True`` stops the gradient at each inner gradient.

    Any Optax transformation serves as ``inner_opt`` (``optax.sgd``, momentum, chains;
    for second-order Adam use ``optax.adam(lr, eps_root=1e-8)`` so the square root
    stays differentiable at zero). Only ``init``, ``update`` and ``apply_updates``
    are called.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      params: initial parameters (any pytree).
      batch: the support set (any pytree), the same at every step.
      inner_opt: the inner optimizer.
      num_steps: number of inner steps (>= 1).
      hparams: per-step hyperparameters: a pytree whose every leaf has a leading
        ``num_steps`` axis. Step ``i`` passes the slice ``i`` to
        ``inner_opt.update(..., hparams=slice)`` through Optax's extra-args channel
        (read by e.g. :func:`metax.scale_by_learned_lr`).
      first_order: apply ``jax.lax.stop_gradient`` to each inner gradient.
      eval_fn: optional function evaluated after every step, e.g. the query loss,
        called like ``loss_fn`` without the batch: ``eval_fn(params)``, with the
        model state after the parameters when ``stateful`` and the step index last
        when ``takes_step``. It may return ``(loss, aux)``. Its values are
        differentiable.
      remat: wrap each inner step in ``jax.checkpoint``: the backward pass keeps each
        step's carry (parameters and inner-optimizer state) instead of its
        activations, at the cost of recomputing them.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn`` is ``loss_fn(params, state, batch)`` and returns its new
        state (e.g. batch-norm running statistics), which is threaded through the
        steps without gradient.
      takes_step: ``loss_fn`` takes the inner step index (int32 scalar) as its last
        argument, e.g. to pick per-step batch-norm weights.
      state: the initial model state (required iff ``stateful``).
      adapt_mask: which parameters the inner loop adapts (fast parameters): a pytree of
        booleans with the structure of ``params`` (``True`` = adapted), or a function
        of the parameters returning one; ``None``: all. The others (slow parameters)
        stay as given, and only the fast ones are differentiated in each inner step,
        so adapting a small part (ANIL's head, CAVIA's context) is cheap. ``hparams``
        keep the structure of ``params``; those of slow leaves are unused.

    Returns:
      ``(adapted_params, info)``; ``info.state`` is the final model state.

    Example:
      >>> import jax.numpy as jnp, optax, metax
      >>> loss = lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2)
      >>> batch = (jnp.arange(4.0), 3.0 * jnp.arange(4.0))
      >>> w, info = metax.adapt(loss, 0.0, batch, optax.sgd(0.1), 20)
      >>> round(float(w), 3), info.support_loss.shape
      (3.0, (20,))
    """
    form = LossForm(has_aux, stateful, takes_step)
    if stateful and state is None:
        raise ValueError(
            "stateful=True needs the initial model state: pass state=... (use {} for none)."
        )
    validation.check_num_steps(num_steps)
    if hparams is not None:
        validation.check_leading_axis(hparams, num_steps, what="hparams")
        if not isinstance(inner_opt, optax.GradientTransformationExtraArgs):
            raise TypeError(
                "hparams were given, but inner_opt does not accept extra arguments, so it "
                "would ignore them; use a transform that reads them, e.g. "
                "metax.scale_by_learned_lr() (alone or inside optax.chain)."
            )
    f = canonical_loss(loss_fn, form)
    evaluate = None if eval_fn is None else canonical_eval(eval_fn, form)
    if adapt_mask is None:
        return _scan(
            f, evaluate, params, batch, state, inner_opt, num_steps, hparams, first_order, remat
        )
    mask = adapt_mask(params) if callable(adapt_mask) else adapt_mask  # of the parameters
    fast, slow = partition(params, mask)
    fast, info = _scan(
        lambda p, s, b, i: f(merge(p, slow), s, b, i),
        None if evaluate is None else lambda p, s, i: evaluate(merge(p, slow), s, i),
        fast,
        batch,
        state,
        inner_opt,
        num_steps,
        None if hparams is None else partition(hparams, mask)[0],  # rates share its tree
        first_order,
        remat,
    )
    return merge(fast, slow), info


def _scan(f, evaluate, params, batch, state, inner_opt, num_steps, hparams, first_order, remat):
    """The inner loop on canonical ``f`` and ``evaluate``, differentiating all of ``params``."""
    grad_fn = jax.value_and_grad(f, has_aux=True)

    def inner_step(carry, xs):
        p, opt_state, s = carry
        step, step_hparams = xs
        (loss, (new_s, aux)), grads = grad_fn(p, s, batch, step)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        new_s = jax.lax.stop_gradient(new_s)
        extra = {} if step_hparams is None else {"hparams": step_hparams}
        updates, opt_state = inner_opt.update(grads, opt_state, p, **extra)
        p = optax.apply_updates(p, updates)
        query = evaluate(p, new_s, step) if evaluate is not None else (None, None)
        return (p, opt_state, new_s), (loss, query, aux)

    if remat:
        inner_step = jax.checkpoint(inner_step)
    steps = jnp.arange(num_steps, dtype=jnp.int32)
    carry = (params, inner_opt.init(params), state)
    (params, _, state), (losses, (query, query_aux), aux) = jax.lax.scan(
        inner_step, carry, (steps, hparams)
    )
    info = AdaptInfo(
        support_loss=losses, query_loss=query, aux=aux, query_aux=query_aux, state=state
    )
    return params, info


def canonical_eval(eval_fn: EvalFn, form: LossForm) -> Callable:
    """``eval_fn`` of the user's form as ``(params, state, step) -> (value, aux)``."""

    def evaluate(p, s, step):
        args = (p, s) if form.stateful else (p,)
        out = eval_fn(*args, step) if form.takes_step else eval_fn(*args)
        value, aux = out if isinstance(out, tuple) else (out, None)
        check_scalar_loss(value, what="eval_fn")
        return value, aux

    return evaluate


def partition(params: Params, mask: PyTree | Callable[[Params], PyTree]) -> tuple[PyTree, PyTree]:
    """``(fast, slow)``: ``params`` split by ``mask``, ``None`` where a part has no leaf.

    Raises:
      ValueError: the mask's structure differs from the parameters', or it adapts nothing.
    """
    mask = mask(params) if callable(mask) else mask
    validation.check_same_structure(mask, params, what="the mask", reference_name="the parameters")
    leaves = jax.tree.leaves(mask)
    if not any(bool(m) for m in leaves):
        raise ValueError(f"the mask adapts no parameter (all {len(leaves)} leaves are False).")
    fast = jax.tree.map(lambda p, m: p if m else None, params, mask)
    slow = jax.tree.map(lambda p, m: None if m else p, params, mask)
    return fast, slow


def merge(fast: PyTree, slow: PyTree) -> Params:
    """The parameters :func:`partition` split, whole again."""
    return jax.tree.map(lambda f, s: s if f is None else f, fast, slow, is_leaf=lambda x: x is None)
