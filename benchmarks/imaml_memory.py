"""Memory of one meta-step: second-order MAML grows with inner steps, iMAML does not.

Compiles (does not run) one jitted ``metax.meta_step`` (meta-gradient and an Adam
update) for each learner and number of inner steps, and prints what XLA's
``memory_analysis()`` assigns to temporaries and outputs: deterministic figures,
the same on a busy machine. Arguments (parameters, optimizer state, tasks) are
listed apart; they do not depend on the learner.

Workloads:

  mlp    regression, metax.nn.MLP 32-256-256-256-1 (ReLU), 64 support and 64 query
         examples per task, meta-batch 8, inner SGD 0.01
  conv4  5-way 1-shot Omniglot-shaped tasks (28x28, 15 queries per class),
         metax.nn.Conv4 with 32 filters, meta-batch 4, inner SGD 0.1

iMAML: lam=1, 10 conjugate-gradient steps. MAML with ``remat=True`` (each inner step
checkpointed) is listed for reference: it also avoids storing every step, by
recomputing the inner loop in the backward pass.

Usage:
    .venv/bin/python benchmarks/imaml_memory.py
    .venv/bin/python benchmarks/imaml_memory.py --workloads mlp --steps 5 50 200
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import metax
import metax.nn

MB = 2**20


def mlp_workload():
    model = metax.nn.MLP(hidden=(256, 256, 256))
    params = model.init(jax.random.key(0), jnp.zeros((1, 32)))["params"]

    def loss(p, batch):
        return jnp.mean((model.apply({"params": p}, batch["x"]) - batch["y"]) ** 2)

    def batch(n):
        return {"x": jnp.zeros((8, n, 32)), "y": jnp.zeros((8, n, 1))}

    return loss, params, metax.Task(support=batch(64), query=batch(64)), 0.01


def conv4_workload():
    model = metax.nn.Conv4(num_classes=5, features=32)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]

    def loss(p, batch):
        logits = model.apply({"params": p}, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    def batch(n):
        return {"x": jnp.zeros((4, n, 28, 28, 1)), "y": jnp.zeros((4, n), jnp.int32)}

    return loss, params, metax.Task(support=batch(5), query=batch(75)), 0.1


WORKLOADS = {"mlp": mlp_workload, "conv4": conv4_workload}


def learners(loss, inner_lr: float, num_steps: int) -> dict:
    sgd = optax.sgd(inner_lr)
    return {
        "MAML (second order)": metax.maml(loss, inner_opt=sgd, num_steps=num_steps),
        "MAML (second order, remat)": metax.maml(
            loss, inner_opt=sgd, num_steps=num_steps, remat=True
        ),
        "iMAML": metax.imaml(loss, inner_opt=sgd, num_steps=num_steps, lam=1.0, cg_steps=10),
    }


def compiled_memory(learner, params, tasks):
    outer = optax.adam(1e-3)
    step = jax.jit(metax.meta_step(learner, outer))
    meta_params = learner.init(params)
    args = jax.eval_shape(lambda: (meta_params, outer.init(meta_params), tasks))
    return step.lower(*args).compile().memory_analysis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 50])
    args = parser.parse_args()
    print(
        "| workload | learner | "
        + " | ".join(f"{k} inner steps" for k in args.steps)
        + f" | ratio {args.steps[-1]}/{args.steps[0]} | arguments |"
    )
    print("|---|---|" + "---|" * (len(args.steps) + 2))
    for name in args.workloads:
        loss, params, tasks, inner_lr = WORKLOADS[name]()
        rows: dict[str, list] = {}
        for k in args.steps:
            for label, learner in learners(loss, inner_lr, k).items():
                rows.setdefault(label, []).append(compiled_memory(learner, params, tasks))
        for label, memories in rows.items():
            total = [(m.temp_size_in_bytes + m.output_size_in_bytes) / MB for m in memories]
            cells = " | ".join(f"{t:,.1f} MB" for t in total)
            print(
                f"| {name} | {label} | {cells} | {total[-1] / total[0]:.2f}x "
                f"| {memories[0].argument_size_in_bytes / MB:,.1f} MB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
