"""Input checks that run at trace time and name the bad value."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np


def check_num_steps(num_steps: Any, *, what: str = "num_steps") -> None:
    """Raises unless ``num_steps`` is a Python int >= 1."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
        raise TypeError(
            f"{what} must be a Python int, got {num_steps!r} ({type(num_steps).__name__})."
        )
    if num_steps < 1:
        raise ValueError(f"{what} must be >= 1, got {num_steps}.")


def _describe(path) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def check_leading_axis(tree: Any, size: int, *, what: str) -> None:
    """Raises unless every leaf of ``tree`` has a leading axis of length ``size``."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = np.shape(leaf)
        if not shape or shape[0] != size:
            raise ValueError(
                f"every leaf of {what} needs a leading axis of length {size}; "
                f"leaf {what}{_describe(path)} has shape {shape}."
            )


def check_same_structure(tree: Any, reference: Any, *, what: str, reference_name: str) -> None:
    """Raises unless ``tree`` has the pytree structure of ``reference``."""
    got, want = jax.tree.structure(tree), jax.tree.structure(reference)
    if got != want:
        raise ValueError(
            f"{what} must have the same pytree structure as {reference_name}.\n"
            f"  {what}: {got}\n  {reference_name}: {want}"
        )


def task_axis_size(tasks: Any, *, what: str = "tasks") -> int:
    """Returns the common leading (task) axis length of a batch of tasks.

    Raises:
      ValueError: if a leaf has no leading axis, or leading sizes differ.
    """
    leaves = jax.tree_util.tree_leaves_with_path(tasks)
    if not leaves:
        raise ValueError(f"{what} is an empty pytree; expected arrays with a leading task axis.")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(
                f"{what}{_describe(path)} is a scalar; every leaf of a task batch needs a "
                "leading task axis (stack tasks along axis 0)."
            )
        sizes[_describe(path)] = shape[0]
    if len(set(sizes.values())) != 1:
        listing = ", ".join(f"{what}{k}: {v}" for k, v in sizes.items())
        raise ValueError(
            f"every leaf of {what} must have the same leading (task) axis length; got {listing}."
        )
    return next(iter(sizes.values()))


def check_real(value: Any, *, what: str, positive: bool = False) -> None:
    """Raises unless ``value`` is a finite real number, ``> 0`` if ``positive`` else ``>= 0``.

    Python and NumPy scalars count; JAX arrays do not (a setting fixed when a learner
    is built is not traced).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {value!r} ({type(value).__name__}).")
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be finite and {bound}, got {value!r}.")
