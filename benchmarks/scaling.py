"""Tasks/s and meta-step time against the number of devices (metax.parallel), Omniglot workloads.

Workloads (Conv-4, 64 filters, second-order MAML, episodes sampled on the device inside
the step, each device sampling its own share):
  D: Finn et al.'s 5-way 1-shot training setting (meta-batch 32, 1 query, 1 inner step);
  A: 5-way 1-shot, 15 queries, 5 inner steps, meta-batch 32.

Each device count runs in its own process (XLA fixes the number of CPU host devices at
start; on a GPU/TPU host it takes the first N devices). Compile time is reported apart
from the median step time.

    .venv/bin/python benchmarks/scaling.py --devices 1 2 4 8 [--workloads D A] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKLOADS = {
    "D": {"ways": 5, "shots": 1, "queries": 1, "inner_steps": 1, "meta_batch": 32},
    "A": {"ways": 5, "shots": 1, "queries": 15, "inner_steps": 5, "meta_batch": 32},
}


def measure(name: str, devices: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import metax
    from metax import cpu_heap, parallel
    from metax.data import EpisodeSpec, sample_episode
    from metax.nn import Conv4

    cpu_heap.keep_cpu_heap_resident()
    w = WORKLOADS[name]
    model = Conv4(num_classes=w["ways"])
    params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["params"]

    def loss_fn(p, batch):
        logits = model.apply({"params": p}, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    learner = metax.maml(loss_fn, inner_opt=optax.sgd(0.4), num_steps=w["inner_steps"])
    outer = optax.adam(1e-3)
    pool = jnp.asarray(np.random.default_rng(0).integers(0, 255, (1100, 20, 28, 28), np.uint8))
    spec = EpisodeSpec(w["ways"], w["shots"], w["queries"], rotate=True)
    mesh = parallel.task_mesh(devices)
    meta_step = parallel.data_parallel(
        learner, outer, mesh, sample=lambda k: sample_episode(k, pool, spec)
    )

    @jax.jit
    def step(mp, opt_state, i):
        keys = jax.random.split(jax.random.fold_in(jax.random.key(0), i), w["meta_batch"])
        return meta_step(mp, opt_state, keys)

    mp = jax.device_put(learner.init(params), parallel.replicated(mesh))
    opt_state = jax.device_put(outer.init(mp), parallel.replicated(mesh))
    tic = time.perf_counter()
    compiled = step.lower(mp, opt_state, 0).compile()
    compile_s = time.perf_counter() - tic
    mp, opt_state, _ = jax.block_until_ready(compiled(mp, opt_state, 0))
    times = []
    for i in range(repeats):
        tic = time.perf_counter()
        mp, opt_state, _ = jax.block_until_ready(compiled(mp, opt_state, i + 1))
        times.append(time.perf_counter() - tic)
    median = float(np.median(times))
    return {
        "workload": name,
        "devices": devices,
        "platform": jax.devices()[0].platform,
        "compile_s": round(compile_s, 1),
        "step_ms": round(1000 * median, 1),
        "tasks_per_s": round(w["meta_batch"] / median, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # workload, devices (child)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.repeats)))
        return
    print("| workload | devices | platform | compile | meta-step (median) | tasks/s |")
    print("|---|---|---|---|---|---|")
    for name in args.workloads:
        for n in args.devices:
            env = {**os.environ}
            env["XLA_FLAGS"] = (
                f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
            )
            child = [
                sys.executable,
                __file__,
                "--one",
                name,
                str(n),
                "--repeats",
                str(args.repeats),
            ]
            done = subprocess.run(child, capture_output=True, text=True, env=env)
            if done.returncode:
                print(f"| {name} | {n} | failed: {done.stderr.strip().splitlines()[-1]} | | | |")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {n} | {r['platform']} | {r['compile_s']} s | {r['step_ms']} ms "
                f"| {r['tasks_per_s']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
