"""Keep XLA:CPU's large buffers resident between steps (glibc only; opt-in).

XLA:CPU allocates each step's large temporaries and outputs with ``malloc``. glibc
serves large allocations with a fresh ``mmap`` and returns them with ``munmap``,
so every meta-step page-faults part of its working set back in.
:func:`keep_cpu_heap_resident` asks glibc for one arena, no ``mmap``-served blocks
and no trimming, so freed buffers are reused and steps get faster. Threads that
already picked an arena keep it, so their largest blocks are still mapped afresh;
the ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0`` environment variables, set before the
process starts, reach those too.

The ``metax`` command and the benchmarks call it at start-up; in a notebook or a
script, call it before the first JAX computation.

It trades memory for time: freed memory stays with the process until it ends, and
the heap fragments (a step's large temporary block that does not fit the freed
space grows the heap by another block), so peak resident memory is higher. Where
memory is the constraint, leave it off or bound the meta-step's temporaries with
``meta_step(..., chunk_size=...)``. Measured speed and memory: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def is_glibc() -> bool:
    """Whether this process runs on Linux with glibc (where these settings apply)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_cpu_heap_resident() -> bool:
    """Tunes glibc ``malloc`` in this process so freed XLA:CPU buffers are reused.

    One arena for threads that have none yet, no ``mmap``-served allocations, no
    trimming. Call it before the first JAX computation.

    Returns:
      ``True`` if applied, ``False`` where the C library is not glibc (macOS,
      musl), where it does nothing.

    Example:
      >>> from metax.cpu_heap import keep_cpu_heap_resident
      >>> keep_cpu_heap_resident() in (True, False)
      True
    """
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # -1 as a trim threshold is read as SIZE_MAX: never trim.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    return all(mallopt(param, value) == 1 for param, value in settings)
