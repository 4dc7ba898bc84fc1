"""ANIL's point: its meta-step against MAML's on Omniglot 5-way 1-shot (Finn et al.'s setting).

Conv-4 (64 filters), meta-batch 32, one inner SGD step, second order, random 28x28 episodes.
Both steps are compiled first (compile time reported apart), then timed alternately,
``--pairs`` times each, in one process.

    .venv/bin/python benchmarks/anil_step.py [--pairs 5] [--meta-batch 32]
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import metax
from metax.cpu_heap import keep_cpu_heap_resident
from metax.nn import Conv4, layer_mask


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--meta-batch", type=int, default=32)
    args = parser.parse_args()
    keep_cpu_heap_resident()
    model = Conv4(num_classes=5)
    params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["params"]

    def loss(p, batch):
        logits = model.apply({"params": p}, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    t = args.meta_batch
    k1, k2 = jax.random.split(jax.random.key(1))
    labels = jnp.tile(jnp.arange(5), (t, 1))
    tasks = metax.Task(
        support={"x": jax.random.uniform(k1, (t, 5, 28, 28, 1)), "y": labels},
        query={"x": jax.random.uniform(k2, (t, 5, 28, 28, 1)), "y": labels},
    )
    sgd, outer = optax.sgd(0.4), optax.adam(1e-3)
    learners = {
        "maml": metax.maml(loss, inner_opt=sgd, num_steps=1),
        "anil": metax.anil(
            loss, head_mask=layer_mask(params, {"Dense_0"}), inner_opt=sgd, num_steps=1
        ),
    }
    steps, states = {}, {}
    for name, learner in learners.items():
        mp = learner.init(params)
        states[name] = (mp, outer.init(mp))
        t0 = time.perf_counter()
        steps[name] = jax.jit(metax.meta_step(learner, outer)).lower(*states[name], tasks).compile()
        print(f"{name}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
        jax.block_until_ready(steps[name](*states[name], tasks))  # warm-up
    times = {name: [] for name in learners}
    for _ in range(args.pairs):
        for name in learners:
            t0 = time.perf_counter()
            jax.block_until_ready(steps[name](*states[name], tasks))
            times[name].append(time.perf_counter() - t0)
    print(f"\n{platform.machine()}, {jax.devices()}, jax {jax.__version__}, meta-batch {t}")
    for name, ts in times.items():
        print(f"| {name} | {1000 * statistics.median(ts):.0f} ms | min {1000 * min(ts):.0f} ms |")
    ratio = statistics.median(times["maml"]) / statistics.median(times["anil"])
    print(f"ANIL's meta-step is {ratio:.2f}x faster than MAML's (median over {args.pairs} pairs)")


if __name__ == "__main__":
    main()
