"""Core types shared by every meta-learning algorithm.

Everything here is a pytree (a ``NamedTuple``) or a type alias; nothing holds
state. An algorithm is a :class:`MetaLearner`: a NamedTuple of pure functions,
in the shape of ``optax.GradientTransformation``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any
"""A pytree of arrays: the parameters a loss function is differentiated by."""
Batch = Any
"""A pytree of arrays: one set of examples (a support or a query set)."""
PyTree = Any
ModelState = Any
"""A pytree of non-differentiated model state, e.g. batch-norm running statistics."""

LossFn = Callable[..., Any]
"""A loss function.

Plain form (the default): ``loss_fn(params, batch) -> scalar``. Three switches of
every learner and of :func:`metax.adapt` extend it, each on its own:

* ``has_aux=True``: it returns ``(scalar, aux)``.
* ``stateful=True``: it takes model state after the parameters,
  ``loss_fn(params, state, batch)``, and returns ``(scalar, new_state)`` (or
  ``(scalar, (new_state, aux))`` with ``has_aux``), e.g. batch-norm statistics.
* ``takes_step=True``: it takes the inner step index (an int32 scalar) as its last
  argument, ``loss_fn(params, [state,] batch, step)``, so a model can pick per-step
  batch-norm weights or statistics inside ``jit`` (e.g. ``metax.nn.Conv4`` with
  ``bn_policy="per_step_batch"`` needs the step but has no state).
"""


class Task(NamedTuple):
    """One few-shot task: a support set to adapt on and a query set to score on.

    Batches of tasks are the same NamedTuple with a leading task axis on every leaf.
    """

    support: Batch
    query: Batch


class MetaParams(NamedTuple):
    """Everything the outer optimizer learns.

    Attributes:
      params: the initial parameters the inner loop starts from.
      hparams: learned inner-loop hyperparameters (e.g. per-layer per-step learning
        rates), or ``None`` when the algorithm learns none. Every leaf carries a
        leading ``num_steps`` axis; step ``i`` of the inner loop sees the slice ``i``.
    """

    params: Params
    hparams: PyTree = None


class AdaptInfo(NamedTuple):
    """Per-step record of an inner loop, each leaf stacked over the inner steps.

    Attributes:
      support_loss: ``(num_steps,)`` support loss at the parameters *before* each step
        (the loss whose gradient that step follows).
      query_loss: ``(num_steps,)`` value of ``eval_fn`` *after* each step, or ``None``.
      aux: the loss function's auxiliary output at each step, or ``None``.
      query_aux: ``eval_fn``'s auxiliary output after each step, or ``None``.
      state: the model state after the last step (``None`` when stateless). Only the
        support set enters it.
    """

    support_loss: jax.Array
    query_loss: jax.Array | None = None
    aux: PyTree = None
    query_aux: PyTree = None
    state: ModelState = None


class TaskAux(NamedTuple):
    """Auxiliary output of :attr:`MetaLearner.loss` for one task.

    Attributes:
      adapt: the :class:`AdaptInfo` of the inner loop on the support set.
      query_loss: the unweighted query loss after the last inner step.
      query_aux: the loss function's auxiliary output on the query set, or ``None``.
      solver: what an implicit-gradient learner reports about the linear solve behind
        its meta-gradient (:class:`metax.ImplicitInfo` for :func:`metax.imaml`), or
        ``None`` for learners that differentiate through the inner loop.
    """

    adapt: AdaptInfo
    query_loss: jax.Array
    query_aux: PyTree = None
    solver: PyTree = None


class MetaLearner(NamedTuple):
    """A meta-learning algorithm as a NamedTuple of pure functions.

    Every learner has the same signatures and accepts every keyword below, ignoring
    those it does not use (as Optax transformations ignore extra arguments), so
    training code never asks which algorithm it runs.

    Attributes:
      init: ``init(params) -> MetaParams``: wraps initial parameters with the
        algorithm's learned hyperparameters (if any).
      loss: ``loss(meta_params, task, *, state=None, step_weights=None) ->
        (loss, TaskAux)``: outer loss of one task; differentiate it w.r.t.
        ``meta_params`` for the meta-gradient. ``state`` is the initial model state
        (stateful losses); ``step_weights`` weigh the query loss after each inner
        step (learners with a multi-step loss).
      adapt: ``adapt(meta_params, support, *, num_steps=None, state=None,
        step_weights=None, eval_fn=None) -> (params, AdaptInfo)``: test-time
        fine-tuning on a support set, the one fine-tuning path. ``num_steps``
        defaults to the trained number; learned per-step hyperparameters extend past
        it by :func:`metax.per_step_slice`.
    """

    init: Callable[[Params], MetaParams]
    loss: Callable[..., tuple[jax.Array, TaskAux]]
    adapt: Callable[..., tuple[Params, AdaptInfo]]
