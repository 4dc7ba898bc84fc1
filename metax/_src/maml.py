"""MAML, first-order MAML and MAML++ as :class:`metax.MetaLearner` factories."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from metax._src.adapt import partition
from metax._src.base import LossFn, MetaLearner, MetaParams, ModelState, Params, Task, TaskAux
from metax._src.learner import fine_tuning, make_learner, query_score
from metax._src.loss_forms import LossForm, canonical_loss
from metax._src.transforms import per_step_rates, scale_by_learned_lr


def maml(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    first_order: bool = False,
    remat: bool = False,
    multi_step_loss: bool = False,
    has_aux: bool = False,
    stateful: bool = False,
    takes_step: bool = False,
    query_loss_fn: LossFn | None = None,
    adapt_mask: Any = None,
) -> MetaLearner:
    """Model-Agnostic Meta-Learning (Finn et al., 2017), exact or first order.

    The outer loss of a task is the query loss after ``num_steps`` steps of
    ``inner_opt`` on the support set; its gradient w.r.t. the initial parameters is
    the exact second-order meta-gradient, or the first-order one (FOMAML) when
    ``first_order=True``. Like every learner, ``loss`` and ``adapt`` accept
    ``state=`` and ``step_weights=`` and ignore what they do not use.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      inner_opt: any Optax transformation, e.g. ``optax.sgd(0.01)``.
      num_steps: inner steps during meta-training (``learner.adapt`` can use more).
      first_order: FOMAML: stop the gradient at each inner gradient.
      remat: checkpoint each inner step (the backward pass keeps each step's
        parameters, not its activations).
      multi_step_loss: score the query set after every inner step and combine the
        scores with the ``step_weights`` passed to ``loss`` (MAML++'s MSL); without
        it ``step_weights`` are ignored and only the last step counts.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch)`` threads model state; pass
        ``state=`` to ``loss`` and ``adapt``.
      takes_step: ``loss_fn`` takes the inner step index as its last argument.
      query_loss_fn: scores the query set instead of ``loss_fn`` (same form), e.g. a
        model in evaluation mode that normalises the query with the support set's
        batch-norm statistics held in the state.
      adapt_mask: which parameters the inner loop adapts (see :func:`metax.adapt`);
        the rest are learned by the outer loop only. ``None``: all.

    Returns:
      A :class:`metax.MetaLearner`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, metax
      >>> loss = lambda w, b: jnp.mean((b["x"] * w - b["y"]) ** 2)
      >>> learner = metax.maml(loss, inner_opt=optax.sgd(0.1), num_steps=1)
      >>> mp = learner.init(jnp.float32(0.0))
      >>> task = metax.Task(support={"x": jnp.ones(3), "y": jnp.ones(3)},
      ...                   query={"x": jnp.ones(3), "y": jnp.ones(3)})
      >>> g = jax.grad(lambda m: learner.loss(m, task)[0])(mp)
      >>> round(float(g.params), 4)  # (1 - 0.1 * 2) * 2 * (0.2 - 1)
      -1.28
    """
    form = LossForm(has_aux, stateful, takes_step)
    options = {"first_order": first_order, "remat": remat, "adapt_mask": adapt_mask}
    inner = fine_tuning(loss_fn, form, inner_opt=inner_opt, num_steps=num_steps, **options)
    score = canonical_loss(loss_fn if query_loss_fn is None else query_loss_fn, form)

    def task_loss(meta_params: MetaParams, task: Task, state: ModelState, step_weights):
        if not multi_step_loss:
            adapted, info = inner.run(meta_params, task.support, num_steps=num_steps, state=state)
            query_loss, query_aux = query_score(
                score, adapted, info.state, task.query, num_steps - 1
            )
            return query_loss, TaskAux(adapt=info, query_loss=query_loss, query_aux=query_aux)

        def eval_fn(p, s, step):
            return query_score(score, p, s, task.query, step)

        _, info = inner.run(
            meta_params, task.support, num_steps=num_steps, state=state, eval_fn=eval_fn
        )
        weights = (
            jax.nn.one_hot(num_steps - 1, num_steps, dtype=info.query_loss.dtype)
            if step_weights is None
            else jnp.asarray(step_weights, info.query_loss.dtype)
        )
        if weights.shape != (num_steps,):
            raise ValueError(
                f"step_weights must have shape ({num_steps},) (one weight per inner step), "
                f"got {weights.shape}."
            )
        query_aux = jax.tree.map(lambda a: a[-1], info.query_aux)
        total = jnp.dot(weights, info.query_loss)
        return total, TaskAux(adapt=info, query_loss=info.query_loss[-1], query_aux=query_aux)

    def init(params: Params) -> MetaParams:
        if adapt_mask is not None:
            partition(params, adapt_mask)  # a bad mask is named now, before any compile
        return MetaParams(params=params)

    return make_learner(task_loss, inner, init=init)


def maml_pp(
    loss_fn: LossFn,
    *,
    num_steps: int,
    init_lr: float,
    inner_opt: optax.GradientTransformationExtraArgs | None = None,
    multi_step_loss: bool = True,
    **maml_options: Any,
) -> MetaLearner:
    """MAML++ (Antoniou et al., 2019): learned per-layer per-step rates and multi-step loss.

    :func:`maml` whose ``init`` adds one ``(num_steps,)`` vector of inner learning
    rates per parameter leaf (LSLR) to ``MetaParams.hparams``; the outer optimizer
    learns them with the parameters. ``loss(meta_params, task, step_weights=w)`` is
    the multi-step loss ``sum_i w[i] * query_loss_after_step_i``; pass weights from
    :func:`metax.msl_weights` as an array each step, so annealing never recompiles.
    Without ``step_weights`` only the final step counts. Fine-tuning for more steps
    than were trained reuses the last step's rates (:func:`metax.per_step_slice`).
    Per-step batch-norm statistics and weights come through a ``stateful`` and
    ``takes_step`` loss. Derivative-order annealing:
    :func:`metax.derivative_order_annealing`. Cosine annealing of the meta learning
    rate: ``optax.adam(optax.cosine_decay_schedule(...))``.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      num_steps: inner steps.
      init_lr: initial value of every learned rate.
      inner_opt: a transformation that reads the rates from the ``hparams`` extra
        argument; default :func:`metax.scale_by_learned_lr` (SGD with learned rates).
        ``optax.chain(optax.scale_by_adam(eps_root=1e-8), metax.scale_by_learned_lr())``
        gives Adam with learned per-step rates.
      multi_step_loss: score the query set after every step (MSL).
      **maml_options: :func:`maml`'s other options (``first_order``, ``remat``,
        ``has_aux``, ``stateful``, ``takes_step``, ``query_loss_fn``); with
        ``first_order`` the rates still learn.

    Returns:
      A :class:`metax.MetaLearner`.
    """
    learner = maml(
        loss_fn,
        inner_opt=scale_by_learned_lr() if inner_opt is None else inner_opt,
        num_steps=num_steps,
        multi_step_loss=multi_step_loss,
        **maml_options,
    )

    def init(params: Params) -> MetaParams:
        return learner.init(params)._replace(hparams=per_step_rates(params, num_steps, init_lr))

    return learner._replace(init=init)
