"""Data-parallel meta-steps: the tasks of a meta-batch sharded over devices with ``jax.sharding``.

Meta-parameters and optimizer state are replicated; each device runs the inner loops
of its share of the tasks (chunked within its share if asked) and XLA averages the
meta-gradient over the mesh axis. Nothing here jits: wrap the returned step in
``jax.jit`` as you would :func:`metax.meta_step`.

Example (4 CPU devices, e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=4``)::

    mesh = metax.parallel.task_mesh(4)
    step = jax.jit(metax.parallel.data_parallel(learner, optax.adam(1e-3), mesh))
    meta_params, opt_state, info = step(meta_params, opt_state, tasks)  # 4 | num_tasks
"""

from __future__ import annotations

import jax
import optax
from jax.sharding import Mesh, NamedSharding

from metax._src.base import MetaLearner
from metax._src.meta_step import MetaStepFn, StepInfo, meta_step

AXIS = "tasks"


def task_mesh(num_devices: int | None = None, *, axis: str = AXIS) -> Mesh:
    """A one-axis mesh over the first ``num_devices`` devices of the default backend.

    Raises:
      ValueError: more devices asked than exist (naming both numbers), or fewer than 1.
    """
    available = jax.devices()
    num_devices = len(available) if num_devices is None else num_devices
    if not 1 <= num_devices <= len(available):
        raise ValueError(
            f"asked for {num_devices} devices, but this process sees {len(available)} "
            f"({available[0].platform}); on CPU, XLA_FLAGS="
            f"--xla_force_host_platform_device_count={num_devices} gives more."
        )
    auto = (jax.sharding.AxisType.Auto,)  # shardings propagate; they are not part of types
    return jax.make_mesh((num_devices,), (axis,), axis_types=auto, devices=available[:num_devices])


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of meta-parameters and optimizer state: a full copy on every device."""
    return NamedSharding(mesh, jax.P())


def sharded_tasks(mesh: Mesh) -> NamedSharding:
    """The sharding of a task batch: its leading (task) axis split over the mesh."""
    return NamedSharding(mesh, jax.P(mesh.axis_names[0]))


def data_parallel(
    learner: MetaLearner,
    outer_opt: optax.GradientTransformation,
    mesh: Mesh,
    *,
    chunk_size: int | None = None,
) -> MetaStepFn:
    """:func:`metax.meta_step` with the task axis split over ``mesh``'s (single) axis.

    Args:
      learner: any :class:`metax.MetaLearner`.
      outer_opt: the outer optimizer.
      mesh: a one-axis mesh, e.g. from :func:`task_mesh`.
      chunk_size: tasks per chunk within each device's share (bounds memory).

    Returns:
      ``step(meta_params, opt_state, tasks, **extra)`` like :func:`metax.meta_step`'s;
      the number of tasks must divide over the devices. ``info.aux`` keeps one entry
      per task, in order.
    """
    (axis,) = mesh.axis_names
    local = meta_step(learner, outer_opt, chunk_size=chunk_size, axis_name=axis)

    def step(meta_params, opt_state, tasks, **extra):
        num_tasks = jax.tree.leaves(tasks)[0].shape[0]
        if num_tasks % mesh.size:
            raise ValueError(
                f"the meta-batch of {num_tasks} tasks does not divide over {mesh.size} devices; "
                f"use a multiple of {mesh.size}."
            )
        info_specs = StepInfo(loss=jax.P(), aux=jax.P(axis), state=jax.P())
        body = jax.shard_map(
            lambda mp, os, t, ex: local(mp, os, t, **ex),
            mesh=mesh,
            in_specs=(jax.P(), jax.P(), jax.P(axis), jax.P()),
            out_specs=(jax.P(), jax.P(), info_specs),
            check_vma=False,  # the meta-gradient's mean over devices is meta_step's pmean
        )
        copy, split = replicated(mesh), sharded_tasks(mesh)
        constrain = jax.lax.with_sharding_constraint
        args = (meta_params, opt_state, extra)
        meta_params, opt_state, extra = jax.tree.map(lambda x: constrain(x, copy), args)
        return body(
            meta_params, opt_state, jax.tree.map(lambda x: constrain(x, split), tasks), extra
        )

    return step


__all__ = ["AXIS", "data_parallel", "replicated", "sharded_tasks", "task_mesh"]
