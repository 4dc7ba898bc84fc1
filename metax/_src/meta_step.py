"""The outer update: mean task loss over a meta-batch, meta-gradient, Optax step."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.base import MetaLearner, MetaParams, ModelState, PyTree, Task, TaskAux


class StepInfo(NamedTuple):
    """What one meta-step reports.

    Attributes:
      loss: mean outer loss over the tasks of the meta-batch (before the update).
      aux: per-task :class:`metax.TaskAux`, every leaf with a leading task axis.
      state: the new model state (the mean over tasks of each task's support-adapted
        state), or ``None`` for a stateless model.
    """

    loss: jax.Array
    aux: TaskAux
    state: ModelState = None


MetaStepFn = Callable[..., tuple[MetaParams, optax.OptState, StepInfo]]


def _mean_over_tasks(tree: PyTree) -> PyTree:
    def mean(x):
        return x.mean(0).astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.inexact) else x[0]

    return jax.tree.map(mean, tree)


def meta_step(
    learner: MetaLearner,
    outer_opt: optax.GradientTransformation,
    *,
    chunk_size: int | None = None,
    axis_name: str | None = None,
) -> MetaStepFn:
    """Builds the pure meta-training step of ``learner`` with ``outer_opt``.

    The step maps ``learner.loss`` over the leading task axis of ``tasks`` with
    ``jax.vmap``, averages, differentiates w.r.t. the meta-parameters and applies one
    ``outer_opt`` update. It never jits: wrap it once in ``jax.jit`` yourself.

    Args:
      learner: a :class:`metax.MetaLearner`.
      outer_opt: any Optax transformation (it also updates learned rates in
        ``MetaParams.hparams``; use ``optax.partition`` to give them their own).
      chunk_size: process the meta-batch in chunks of this many tasks: ``vmap``
        inside a chunk, ``lax.scan`` across chunks accumulating the meta-gradient.
        Peak memory is then that of one chunk; the result equals the unchunked step.
        It must divide the number of tasks. ``None``: all tasks at once.
      axis_name: the mesh axis the tasks are split over when the step runs inside
        ``jax.shard_map`` (see :func:`metax.parallel.data_parallel`): each device
        holds an equal share, and the loss, meta-gradient and model state are
        averaged over the axis (XLA's all-reduce) before the replicated update.
        ``None``: the step sees the whole meta-batch.

    Returns:
      ``step(meta_params, opt_state, tasks, **extra) -> (meta_params, opt_state, info)``
      where ``tasks`` is a :class:`metax.Task` with a leading task axis on every leaf,
      ``extra`` is passed unbatched to ``learner.loss`` (e.g. ``step_weights=``,
      ``state=``) and ``info`` is a :class:`StepInfo`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, metax
      >>> loss = lambda w, b: jnp.mean((w - b) ** 2)
      >>> learner = metax.maml(loss, inner_opt=optax.sgd(0.1), num_steps=1)
      >>> outer = optax.sgd(0.5)
      >>> step = jax.jit(metax.meta_step(learner, outer))
      >>> mp = learner.init(jnp.float32(0.0))
      >>> tasks = metax.Task(support=jnp.ones((4, 3)), query=jnp.ones((4, 3)))
      >>> mp, opt_state, info = step(mp, outer.init(mp), tasks)
      >>> info.loss.shape, info.aux.query_loss.shape
      ((), (4,))
    """
    if chunk_size is not None:
        validation.check_num_steps(chunk_size, what="chunk_size")

    def step(meta_params: MetaParams, opt_state: optax.OptState, tasks: Task, **extra):
        if not isinstance(tasks, Task):
            raise TypeError(
                f"tasks must be a metax.Task with a leading task axis, got {type(tasks).__name__}."
            )
        num_tasks = validation.task_axis_size(tasks)

        def value_and_grad(chunk: Task):
            def chunk_loss(mp):
                losses, aux = jax.vmap(lambda task: learner.loss(mp, task, **extra))(chunk)
                return losses.sum() / num_tasks, aux

            return jax.value_and_grad(chunk_loss, has_aux=True)(meta_params)

        if chunk_size is None or chunk_size == num_tasks:
            (loss, aux), grads = value_and_grad(tasks)
        else:
            (loss, aux), grads = _accumulate_over_chunks(
                value_and_grad, tasks, num_tasks, chunk_size
            )
        state = None if aux.adapt.state is None else _mean_over_tasks(aux.adapt.state)
        if axis_name is not None:  # every device holds an equal share of the tasks
            loss, grads, state = jax.lax.pmean((loss, grads, state), axis_name)
        updates, opt_state = outer_opt.update(grads, opt_state, meta_params)
        meta_params = optax.apply_updates(meta_params, updates)
        return meta_params, opt_state, StepInfo(loss=loss, aux=aux, state=state)

    return step


def _accumulate_over_chunks(value_and_grad, tasks: Task, num_tasks: int, chunk_size: int):
    """Sums ``value_and_grad`` over chunks of tasks with ``lax.scan`` (bounded memory)."""
    if num_tasks % chunk_size:
        raise ValueError(
            f"chunk_size={chunk_size} must divide the number of tasks in the meta-batch, "
            f"got {num_tasks} tasks."
        )
    num_chunks = num_tasks // chunk_size
    chunks = jax.tree.map(lambda x: x.reshape((num_chunks, chunk_size, *x.shape[1:])), tasks)

    def body(grad_sum, chunk):
        (loss, aux), grads = value_and_grad(chunk)
        return jax.tree.map(jnp.add, grad_sum, grads), (loss, aux)

    _, probe_grads = jax.eval_shape(value_and_grad, jax.tree.map(lambda x: x[0], chunks))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), probe_grads)
    grads, (losses, aux) = jax.lax.scan(body, zeros, chunks)
    aux = jax.tree.map(lambda x: x.reshape((num_tasks, *x.shape[2:])), aux)
    return (losses.sum(), aux), grads
