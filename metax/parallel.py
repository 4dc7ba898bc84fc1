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

import socket
import time
from collections.abc import Callable

import jax
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from metax._src.base import MetaLearner, Task
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
    sample: Callable[[jax.Array], Task] | None = None,
) -> MetaStepFn:
    """:func:`metax.meta_step` with the task axis split over ``mesh``'s (single) axis.

    Args:
      learner: any :class:`metax.MetaLearner`.
      outer_opt: the outer optimizer.
      mesh: a one-axis mesh, e.g. from :func:`task_mesh`.
      chunk_size: tasks per chunk within each device's share (bounds memory).
      sample: ``sample(key) -> Task``, one task from its key. If given, the step takes
        per-task keys (e.g. ``jax.random.split(key, num_tasks)``) in place of tasks and
        each device samples its own share, inside the program: the same tasks as
        ``jax.vmap(sample)(keys)`` on one device, with no device sampling another's.

    Returns:
      ``step(meta_params, opt_state, tasks, **extra)`` like :func:`metax.meta_step`'s;
      the number of tasks must divide over the devices. ``info.aux`` keeps one entry
      per task, in order.

    Example (on-device sampling)::

        step = metax.parallel.data_parallel(learner, opt, mesh, sample=sample_task)
        keys = jax.random.split(jax.random.fold_in(key, i), num_tasks)
        meta_params, opt_state, info = jax.jit(step)(meta_params, opt_state, keys)
    """
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"data_parallel splits tasks over a one-axis mesh; this one has axes {mesh.axis_names}."
        )
    (axis,) = mesh.axis_names
    inner = meta_step(learner, outer_opt, chunk_size=chunk_size, axis_name=axis)
    local = (
        inner
        if sample is None
        else lambda mp, os, k, **ex: inner(mp, os, jax.vmap(sample)(k), **ex)
    )

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


def initialize(
    coordinator: str, *, num_processes: int, process_id: int, timeout_s: int = 120
) -> None:
    """Joins a run of several processes (hosts, or processes on one host) with ``jax.distributed``.

    Call it in every process before any JAX computation; afterwards ``jax.devices()``
    lists the devices of all processes and a :func:`task_mesh` spans them. On CPU the
    processes' collectives go through Gloo.

    Args:
      coordinator: ``HOST:PORT`` of process 0, which serves the coordination there.
      num_processes: processes in the run.
      process_id: this process's index, ``0 .. num_processes - 1``.
      timeout_s: seconds to wait for the coordinator and the other processes.

    Raises:
      ValueError: a malformed address, or a process id out of range.
      ConnectionError: process 0 cannot serve at the address, or nothing answers
        there within ``timeout_s`` (the message names the address). Past that check,
        a process that never joins makes jaxlib end the others after ``timeout_s``.
    """
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"the coordinator address must be HOST:PORT, got {coordinator!r}.")
    if not (isinstance(num_processes, int) and num_processes >= 1):
        raise ValueError(f"num_processes must be >= 1, got {num_processes!r}.")
    if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
        raise ValueError(
            f"process_id={process_id!r} is out of range for {num_processes} processes "
            f"(0 .. {num_processes - 1})."
        )
    # jaxlib aborts the process when it cannot reach the coordinator: check it first
    _wait_for_coordinator(host, int(port), process_id=process_id, timeout_s=timeout_s)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator, num_processes, process_id, initialization_timeout=timeout_s
    )


def _wait_for_coordinator(host: str, port: int, *, process_id: int, timeout_s: float) -> None:
    """Process 0: the port is free to serve on; the others: it answers within ``timeout_s``."""
    if process_id == 0:
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError as e:
                raise ConnectionError(
                    f"process 0 cannot serve the coordination at {host}:{port}: {e.strerror}"
                ) from e
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"process {process_id} could not join the run coordinated at {host}:{port} "
                    f"within {timeout_s} s: nothing answers there (is process 0 running?)"
                ) from None
            time.sleep(0.2)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def gather(tree):
    """``tree``'s arrays with every process's shards, as host arrays (as is, with one process)."""
    if jax.process_count() == 1:
        return tree
    return multihost_utils.process_allgather(tree, tiled=True)


__all__ = [
    "AXIS",
    "barrier",
    "data_parallel",
    "gather",
    "initialize",
    "replicated",
    "sharded_tasks",
    "task_mesh",
]
