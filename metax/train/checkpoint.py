"""Orbax checkpoints of a training run: atomic, resumable, with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the run."""


def complete_steps(directory: str | Path) -> list[int]:
    """The steps of the complete checkpoints in ``directory``, oldest first, read without JAX.

    Orbax writes each step into a temporary folder and renames it to the step's number
    once complete; reading the names starts no JAX backend (a multi-process run checks
    its resume flags before joining the others).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


class Checkpointer:
    """Saves and restores the full training state under ``directory``.

    Orbax writes each step to a temporary directory and renames it when complete,
    so a crash mid-save never corrupts the latest good checkpoint.

    Args:
      directory: where the step directories live.
      max_to_keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        """The steps of all complete checkpoints, oldest first (:func:`complete_steps`)."""
        return complete_steps(self.directory)

    def save(self, step: int, state: Any) -> None:
        """Saves ``state`` at ``step`` and waits until it is on disk.

        Raises:
          CheckpointError: if ``state`` holds a NaN or infinity (a diverged run never
            replaces a good checkpoint).
        """
        for path, leaf in jax.tree_util.tree_leaves_with_path(state):
            arr = np.asarray(leaf)
            if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                raise CheckpointError(
                    f"refusing to checkpoint step {step}: {jax.tree_util.keystr(path)} is not finite; "
                    f"the last good checkpoint (step {self.latest_step()}) is kept."
                )
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores the checkpoint at ``step`` (default: latest) into ``abstract_state``'s structure.

        Raises:
          CheckpointError: if there is no checkpoint (at ``step``) or it cannot be read.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"no checkpoint found in {self.directory}")
        elif step not in (kept := self.all_steps()):
            raise CheckpointError(
                f"no checkpoint at step {step} in {self.directory}; "
                f"the kept steps are {kept or 'none'}"
            )
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f"cannot read the checkpoint at step {step} in {self.directory}: "
                f"{type(e).__name__}: {e}"
            ) from e

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.close()
