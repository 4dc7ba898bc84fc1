"""The benchmark workloads' random tasks and metax models, shared by the benchmark scripts."""

from __future__ import annotations


def random_tasks(w: dict, seed: int):
    """One meta-batch of random tasks (``metax.Task`` with a leading task axis)."""
    import jax
    import jax.numpy as jnp

    import metax

    k = jax.random.split(jax.random.key(seed), 4)
    t = w["meta_batch"]
    if w["kind"] == "omniglot":
        n_s, n_q = w["ways"] * w["shots"], w["ways"] * w["queries"]
        labels = lambda n: jnp.tile(jnp.repeat(jnp.arange(w["ways"]), n // w["ways"]), (t, 1))  # noqa: E731
        return metax.Task(
            support={"x": jax.random.uniform(k[0], (t, n_s, 28, 28, 1)), "y": labels(n_s)},
            query={"x": jax.random.uniform(k[1], (t, n_q, 28, 28, 1)), "y": labels(n_q)},
        )
    xs = jax.random.uniform(k[0], (t, w["shots"], 1), minval=-5, maxval=5)
    xq = jax.random.uniform(k[1], (t, w["queries"], 1), minval=-5, maxval=5)
    return metax.Task(support={"x": xs, "y": jnp.sin(xs)}, query={"x": xq, "y": jnp.sin(xq)})


def metax_model(w: dict, key):
    """The workload's Flax model in metax: ``(params, loss_fn)``."""
    import jax.numpy as jnp
    import optax

    from metax.nn import MLP, Conv4

    if w["kind"] == "omniglot":
        model = Conv4(
            num_classes=w["ways"],
            conv_strategy=w.get("conv", "auto"),
            pooling=w.get("pooling", "select"),
        )
        params = model.init(key, jnp.zeros((2, 28, 28, 1)))["params"]

        def loss_fn(p, batch):
            logits = model.apply({"params": p}, batch["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    else:
        model = MLP(hidden=(40, 40))
        params = model.init(key, jnp.zeros((2, 1)))["params"]

        def loss_fn(p, batch):
            return jnp.mean((model.apply({"params": p}, batch["x"]) - batch["y"]) ** 2)

    return params, loss_fn
