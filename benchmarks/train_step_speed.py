"""Time a training run's own meta-step under variants of its config, each in a fresh process.

The step is the one ``metax train`` runs (``metax.train.run.step_selector``: sampling, the
learner, the outer update), built from a run directory's ``config.json``; variants change
settings that leave the meta-gradient as it is (``chunk_size``, ``conv_strategy``), or the
heap (``heap=default``: glibc's; otherwise resident, as the ``metax`` command keeps it). Variants
alternate, ``--pairs`` times, so that a drift of the machine hits them all alike:

    .venv/bin/python benchmarks/train_step_speed.py runs/table-maml++-20w1s \
        --variants "" chunk_size=none chunk_size=4 --phases first_order exact --pairs 2

Prints one row per variant and phase: compile time, median step time over the pairs.
"""

import argparse
import json
import subprocess
import sys
import time


def measure(run_dir: str, variant: str, phase: str, repeats: int) -> dict:
    import dataclasses

    import jax
    import numpy as np

    from metax.cpu_heap import keep_cpu_heap_resident
    from metax.train import run as runs
    from metax.train.config import load_config

    changes = dict(item.split("=", 1) for item in variant.split(",") if item)
    if changes.pop("heap", "resident") == "resident":
        keep_cpu_heap_resident()  # before the first JAX computation, as `metax` does
    config = load_config(runs.FAMILIES, f"{run_dir}/config.json")

    def value(name: str, text: str):  # chunk_size=none unchunks; numbers stay numbers
        if text.lower() == "none":
            return None
        return text if isinstance(getattr(config, name), str) else int(text)

    config = dataclasses.replace(config, **{k: value(k, v) for k, v in changes.items()})
    run = runs.build(config)
    run.family.check()
    state = runs.initial_state(run)
    switch = run.learners.switch_epoch * config.steps_per_epoch
    step = runs.step_selector(run)(0 if phase == "first_order" else max(switch, 0))
    tic = time.perf_counter()
    state, _ = step(state)
    jax.block_until_ready(state)
    first = time.perf_counter() - tic
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        state, _ = step(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - tic)
    return {"compile_and_first_s": round(first, 1), "step_s": float(np.median(times))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory (its config.json is read)")
    parser.add_argument(
        "--variants", nargs="+", default=[""], help='e.g. "" chunk_size=none conv_strategy=xla'
    )
    parser.add_argument("--phases", nargs="+", default=["first_order"])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4, help="timed steps per process")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.run, *args.child, args.repeats)))
        return
    rows: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.pairs):
        for phase in args.phases:
            for variant in args.variants:
                cmd = [sys.executable, __file__, args.run, "--repeats", str(args.repeats)]
                out = subprocess.run(
                    [*cmd, "--child", variant, phase], check=True, capture_output=True, text=True
                ).stdout
                rows.setdefault((variant, phase), []).append(
                    json.loads(out.strip().splitlines()[-1])
                )
    print(
        "| variant | phase | compile + first step (s) | step (s), per process |\n|---|---|---|---|"
    )
    for (variant, phase), runs in rows.items():
        steps = ", ".join(f"{r['step_s']:.2f}" for r in runs)
        first = ", ".join(f"{r['compile_and_first_s']}" for r in runs)
        print(f"| {variant or '(as configured)'} | {phase} | {first} | {steps} |")


if __name__ == "__main__":
    main()
