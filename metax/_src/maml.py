"""MAML, first-order MAML and MAML++ as :class:`metax.MetaLearner` factories."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.adapt import adapt
from metax._src.base import (
    Batch,
    LossFn,
    MetaLearner,
    MetaParams,
    ModelState,
    Params,
    Task,
    TaskAux,
)
from metax._src.loss_forms import canonical_loss
from metax._src.transforms import per_step_rates, scale_by_learned_lr


def _gradient_learner(
    loss_fn: LossFn,
    *,
    inner_opt: optax.GradientTransformation,
    num_steps: int,
    init_hparams,
    first_order: bool,
    remat: bool,
    multi_step_loss: bool,
    has_aux: bool,
    stateful: bool,
    query_loss_fn: LossFn | None,
) -> MetaLearner:
    """The shared body of MAML-style learners: adapt on support, score on query."""
    validation.check_num_steps(num_steps)
    f = canonical_loss(
        loss_fn if query_loss_fn is None else query_loss_fn, has_aux=has_aux, stateful=stateful
    )

    def init(params: Params) -> MetaParams:
        return MetaParams(params=params, hparams=init_hparams(params))

    def run_inner(meta_params, support, *, num_steps, state, eval_fn=None):
        return adapt(
            loss_fn,
            meta_params.params,
            support,
            inner_opt,
            num_steps,
            hparams=meta_params.hparams,
            first_order=first_order,
            eval_fn=eval_fn,
            remat=remat,
            has_aux=has_aux,
            stateful=stateful,
            state=state,
        )

    def learner_adapt(
        meta_params: MetaParams,
        support: Batch,
        *,
        num_steps: int = num_steps,
        state: ModelState = None,
        eval_fn=None,
    ):
        if meta_params.hparams is not None and num_steps != _steps_of(meta_params.hparams):
            raise ValueError(
                f"num_steps={num_steps} but the learned per-step hyperparameters cover "
                f"{_steps_of(meta_params.hparams)} steps; adapt with that many steps."
            )
        return run_inner(meta_params, support, num_steps=num_steps, state=state, eval_fn=eval_fn)

    def loss(
        meta_params: MetaParams,
        task: Task,
        *,
        step_weights: jax.Array | None = None,
        state: ModelState = None,
    ) -> tuple[jax.Array, TaskAux]:
        if not isinstance(meta_params, MetaParams):
            raise TypeError(
                f"meta_params must be a metax.MetaParams (from learner.init), got {type(meta_params).__name__}."
            )
        if not multi_step_loss:
            if step_weights is not None:
                raise ValueError(
                    "step_weights were given but this learner has multi_step_loss=False; "
                    "build it with multi_step_loss=True (maml_pp does by default)."
                )
            adapted, info = run_inner(meta_params, task.support, num_steps=num_steps, state=state)
            last = jnp.asarray(num_steps - 1, jnp.int32)
            query_loss, (_, query_aux) = f(adapted, info.state, task.query, last)
            return query_loss, TaskAux(adapt=info, query_loss=query_loss, query_aux=query_aux)

        def eval_fn(p, s=None, step=None):
            query_loss, (_, query_aux) = f(p, s, task.query, step)
            return (query_loss, query_aux) if has_aux else query_loss

        _, info = run_inner(
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
        query_aux = (
            None if info.query_aux is None else jax.tree.map(lambda a: a[-1], info.query_aux)
        )
        total = jnp.dot(weights, info.query_loss)
        return total, TaskAux(adapt=info, query_loss=info.query_loss[-1], query_aux=query_aux)

    return MetaLearner(init=init, loss=loss, adapt=learner_adapt)


def _steps_of(hparams) -> int:
    return jax.tree.leaves(hparams)[0].shape[0]


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
    query_loss_fn: LossFn | None = None,
) -> MetaLearner:
    """Model-Agnostic Meta-Learning (Finn et al., 2017), exact or first order.

    The outer loss of a task is the query loss after ``num_steps`` steps of
    ``inner_opt`` on the support set; its gradient w.r.t. the initial parameters is
    the exact second-order meta-gradient, or the first-order one (FOMAML) when
    ``first_order=True``.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      inner_opt: any Optax transformation, e.g. ``optax.sgd(0.01)``.
      num_steps: inner steps during meta-training (``learner.adapt`` can use more).
      first_order: FOMAML: stop the gradient at each inner gradient.
      remat: checkpoint each inner step (memory flat in ``num_steps``).
      multi_step_loss: score the query set after every inner step and combine the
        scores with ``step_weights`` passed to ``loss`` (MAML++'s MSL).
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch, step)`` threads model state; pass
        ``state=`` to ``loss`` and ``adapt``.
      query_loss_fn: scores the query set instead of ``loss_fn`` (same form), e.g. a
        model in evaluation mode that normalises the query with the support set's
        batch-norm statistics held in the state.

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
    return _gradient_learner(
        loss_fn,
        inner_opt=inner_opt,
        num_steps=num_steps,
        init_hparams=lambda params: None,
        first_order=first_order,
        remat=remat,
        multi_step_loss=multi_step_loss,
        has_aux=has_aux,
        stateful=stateful,
        query_loss_fn=query_loss_fn,
    )


def maml_pp(
    loss_fn: LossFn,
    *,
    num_steps: int,
    init_lr: float,
    inner_opt: optax.GradientTransformationExtraArgs | None = None,
    first_order: bool = False,
    remat: bool = False,
    multi_step_loss: bool = True,
    has_aux: bool = False,
    stateful: bool = False,
    query_loss_fn: LossFn | None = None,
) -> MetaLearner:
    """MAML++ (Antoniou et al., 2019): learned per-layer per-step rates and multi-step loss.

    ``init`` adds one ``(num_steps,)`` vector of inner learning rates per parameter
    leaf (LSLR) to ``MetaParams.hparams``; the outer optimizer learns them with the
    parameters. ``loss(meta_params, task, step_weights=w)`` is the multi-step loss
    ``sum_i w[i] * query_loss_after_step_i``; pass weights from
    :func:`metax.msl_weights` as an array each step, so annealing never recompiles.
    Without ``step_weights`` only the final step counts. Per-step batch-norm
    statistics and weights come through a ``stateful`` loss, which is told the step.
    Derivative-order annealing: :func:`metax.derivative_order_annealing`. Cosine
    annealing of the meta learning rate: ``optax.adam(optax.cosine_decay_schedule(...))``.

    Args:
      loss_fn: the loss; see :data:`metax.LossFn` for its forms.
      num_steps: inner steps.
      init_lr: initial value of every learned rate.
      inner_opt: a transformation that reads the rates from the ``hparams`` extra
        argument; default :func:`metax.scale_by_learned_lr` (SGD with learned rates).
        ``optax.chain(optax.scale_by_adam(eps_root=1e-8), metax.scale_by_learned_lr())``
        gives Adam with learned per-step rates.
      first_order: stop the gradient at each inner gradient (the rates still learn).
      remat: checkpoint each inner step.
      multi_step_loss: score the query set after every step (MSL).
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      stateful: ``loss_fn(params, state, batch, step)`` threads model state.
      query_loss_fn: scores the query set instead of ``loss_fn`` (same form).

    Returns:
      A :class:`metax.MetaLearner`.
    """
    return _gradient_learner(
        loss_fn,
        inner_opt=scale_by_learned_lr() if inner_opt is None else inner_opt,
        num_steps=num_steps,
        init_hparams=lambda params: per_step_rates(params, num_steps, init_lr),
        first_order=first_order,
        remat=remat,
        multi_step_loss=multi_step_loss,
        has_aux=has_aux,
        stateful=stateful,
        query_loss_fn=query_loss_fn,
    )
