"""Where the memory of a meta-step goes: XLA's buffer assignment, per chunk size.

Compiles (does not run) metax's meta-step for Omniglot workloads A and D of
``meta_step_speed.py`` with several ``chunk_size`` values and prints what XLA's
``memory_analysis()`` assigns: temporaries (activations kept for the backward
pass, im2col patches, gradients) and arguments. These figures are deterministic,
so they can be taken on a busy machine; the resident peak of a run adds the
runtime (~300 MB) and allocator slack on top.

Usage:
    .venv/bin/python benchmarks/memory_breakdown.py
    .venv/bin/python benchmarks/memory_breakdown.py --workloads A --chunks 1 4 32
"""

from __future__ import annotations

import argparse

import meta_step_speed as speed
from tasks import random_tasks


def analyse(w: dict) -> dict:
    """Compiles ``w``'s metax step and returns its buffer sizes in MB."""
    import jax

    step, params, opt_state = speed.metax_step(w)
    tasks = random_tasks(w, 0)
    memory = jax.jit(step).lower(params, opt_state, tasks).compile().memory_analysis()
    mb = 2**20
    return {
        "temporaries_mb": memory.temp_size_in_bytes / mb,
        "arguments_mb": memory.argument_size_in_bytes / mb,
        "outputs_mb": memory.output_size_in_bytes / mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["A", "D"])
    parser.add_argument("--chunks", nargs="+", type=int, default=[1, 4, 8, 32])
    args = parser.parse_args()
    print("| workload | chunk size | XLA temporaries | arguments |")
    print("|---|---|---|---|")
    for w in speed.workloads(args.workloads):
        for chunk in args.chunks:
            if chunk > w["meta_batch"]:
                continue
            row = analyse({**w, "chunk_size": None if chunk == w["meta_batch"] else chunk})
            print(
                f"| {speed.describe(w).split(', metax in')[0]} | {chunk} "
                f"| {row['temporaries_mb']:,.0f} MB | {row['arguments_mb']:,.1f} MB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
