"""Time one jitted Omniglot meta-step (sampling included) of metax on random 28x28 data.

Prints compile time and the median of several steps, for each convolution strategy
given, each in its own process so that compiles and caches do not interfere:

    .venv/bin/python benchmarks/omniglot_step.py --strategies patches xla [--first-order]
        [--inner-steps 1] [--queries 1] [--meta-batch 32] [--repeats 5]
"""

import argparse
import json
import subprocess
import sys
import time


def measure(args: argparse.Namespace, strategy: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import metax
    from metax.data import EpisodeSpec, sample_episodes
    from metax.nn import Conv4

    model = Conv4(num_classes=args.ways, conv_strategy=strategy)
    params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["params"]

    def loss_fn(p, batch):
        logits = model.apply({"params": p}, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    learner = metax.maml(
        loss_fn, inner_opt=optax.sgd(0.4), num_steps=args.inner_steps, first_order=args.first_order
    )
    outer = optax.adam(1e-3)
    pool = jnp.asarray(np.random.default_rng(0).integers(0, 255, (1100, 20, 28, 28), np.uint8))
    spec = EpisodeSpec(args.ways, args.shots, args.queries, rotate=True)
    meta_step = metax.meta_step(learner, outer)

    @jax.jit
    def step(mp, opt_state, key):
        return meta_step(mp, opt_state, sample_episodes(key, pool, spec, args.meta_batch))

    mp = learner.init(params)
    opt_state = outer.init(mp)
    t0 = time.perf_counter()
    compiled = step.lower(mp, opt_state, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    out = compiled(mp, opt_state, jax.random.key(0))
    jax.block_until_ready(out)
    times = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        out = compiled(out[0], out[1], jax.random.key(i + 1))
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return {
        "strategy": strategy,
        "compile_s": round(compile_s, 2),
        "median_step_ms": round(1000 * float(np.median(times)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies", nargs="+", default=["patches", "xla"])
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=1)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return
    rows = []
    for strategy in args.strategies:
        cmd = [sys.executable, __file__, "--child", strategy, *sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    order = "first" if args.first_order else "second"
    print(
        f"Omniglot {args.ways}-way {args.shots}-shot, {args.queries} queries/class, {args.inner_steps} inner "
        f"step(s), meta-batch {args.meta_batch}, {order} order, Conv-4 (64 filters)"
    )
    print("| convolution | compile (s) | median step (ms) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['compile_s']} | {r['median_step_ms']} |")


if __name__ == "__main__":
    main()
