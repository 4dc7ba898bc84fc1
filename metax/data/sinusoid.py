"""The sinusoid regression task family of Finn et al. (2017)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metax._src.base import Task


class SinusoidTasks(NamedTuple):
    """A batch of sinusoid tasks with their ground truth.

    Attributes:
      tasks: a :class:`metax.Task`; ``support`` and ``query`` are dicts with ``x`` and
        ``y`` of shape ``[num_tasks, points, 1]``.
      amplitude: ``[num_tasks]`` amplitudes.
      phase: ``[num_tasks]`` phases.
    """

    tasks: Task
    amplitude: jax.Array
    phase: jax.Array


def sample_sinusoid_tasks(
    key: jax.Array,
    num_tasks: int,
    *,
    shots: int,
    queries: int | None = None,
    amplitude_range: tuple[float, float] = (0.1, 5.0),
    phase_range: tuple[float, float] = (0.0, jnp.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
) -> SinusoidTasks:
    """Samples tasks ``y = A sin(x - phase)`` with ``A``, ``phase`` and ``x`` uniform.

    Pure JAX: it runs inside a jitted meta-step, so sampling costs no host work.
    The defaults are Finn et al.'s: amplitude in [0.1, 5], phase in [0, pi], x in [-5, 5].

    Args:
      key: a PRNG key.
      num_tasks: number of tasks (the leading axis of every leaf).
      shots: support points per task (K).
      queries: query points per task (default: ``shots``).
      amplitude_range: ``(low, high)`` of the amplitude.
      phase_range: ``(low, high)`` of the phase.
      x_range: ``(low, high)`` of the inputs.

    Returns:
      A :class:`SinusoidTasks`.

    Example:
      >>> import jax
      >>> s = sample_sinusoid_tasks(jax.random.key(0), 3, shots=5, queries=7)
      >>> s.tasks.support["x"].shape, s.tasks.query["y"].shape
      ((3, 5, 1), (3, 7, 1))
    """
    for name, value in (("num_tasks", num_tasks), ("shots", shots)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    queries = shots if queries is None else queries
    if not isinstance(queries, int) or queries < 1:
        raise ValueError(f"queries must be a positive int, got {queries!r}.")
    k_amp, k_phase, k_x = jax.random.split(key, 3)
    amplitude = jax.random.uniform(
        k_amp, (num_tasks,), minval=amplitude_range[0], maxval=amplitude_range[1]
    )
    phase = jax.random.uniform(k_phase, (num_tasks,), minval=phase_range[0], maxval=phase_range[1])
    x = jax.random.uniform(
        k_x, (num_tasks, shots + queries, 1), minval=x_range[0], maxval=x_range[1]
    )
    y = amplitude[:, None, None] * jnp.sin(x - phase[:, None, None])
    tasks = Task(
        support={"x": x[:, :shots], "y": y[:, :shots]},
        query={"x": x[:, shots:], "y": y[:, shots:]},
    )
    return SinusoidTasks(tasks=tasks, amplitude=amplitude, phase=phase)
