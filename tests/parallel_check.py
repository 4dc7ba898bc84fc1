"""Run by tests/test_parallel.py in a process with several host devices: sharded equals unsharded."""

import sys

import chex
import jax
import jax.numpy as jnp
import optax

import metax
import metax.parallel as par
from metax.nn import Conv4
from tests.test_meta_step import LEARNERS, init_mlp, sample_tasks

MESHES = [n for n in (1, 2, 4, 8) if n <= jax.device_count()]


def run(step, meta_params, outer, tasks_of, steps, mesh=None, **extra):
    opt_state = outer.init(meta_params)
    if mesh is not None:  # on the mesh from the start, so the step compiles once
        meta_params, opt_state = jax.device_put((meta_params, opt_state), par.replicated(mesh))
    for i in range(steps):
        meta_params, opt_state, info = step(meta_params, opt_state, tasks_of(i), **extra)
    return meta_params, info


def mlp_exact(name: str) -> None:
    """20 meta-steps in float64 on 1, 2, 4, 8 devices (chunks within each share) = one device."""
    jax.config.update("jax_enable_x64", True)
    learner, outer = LEARNERS[name](), optax.sgd(0.05)  # not Adam: it is scale-invariant
    mp = jax.tree.map(lambda x: x.astype(jnp.float64), learner.init(init_mlp(jax.random.key(0))))
    tasks_of = lambda i: jax.tree.map(  # noqa: E731
        lambda x: x.astype(jnp.float64), sample_tasks(jax.random.key(i), 16)
    )
    weights = jnp.ones(3) / 3
    want, _ = run(
        jax.jit(metax.meta_step(learner, outer)), mp, outer, tasks_of, 20, step_weights=weights
    )
    for n in MESHES:
        mesh = par.task_mesh(n)
        step = par.data_parallel(learner, outer, mesh, chunk_size=2)
        step = jax.jit(chex.assert_max_traces(step, n=1))
        got, info = run(step, mp, outer, tasks_of, 20, mesh, step_weights=weights)
        chex.assert_trees_all_close(got, want, rtol=1e-11, atol=1e-13)
        # the intended shardings: meta-parameters replicated, per-task results split over devices
        assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(got)), n
        sharding = info.aux.query_loss.sharding
        assert n == 1 or sharding.spec == jax.P("tasks"), sharding
        chex.clear_trace_counter()
    print(f"{name}: {', '.join(map(str, MESHES))} devices equal one device (float64, 20 steps)")
    three = jax.tree.map(lambda x: x[:3], tasks_of(0))
    try:
        par.data_parallel(learner, outer, par.task_mesh(2))(mp, outer.init(mp), three)
    except ValueError as e:
        assert "the meta-batch of 3 tasks does not divide over 2 devices" in str(e), e
        print("3 tasks over 2 devices: named")


def conv4_per_step_bn() -> None:
    """MAML++ with per-step batch-norm statistics (a stateful model): 1 vs 4 devices, float32."""
    model = Conv4(num_classes=3, features=4, num_steps=2, bn_policy="per_step")
    variables = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))

    def make_loss(train):
        def loss(params, state, batch, step):
            out = model.apply({"params": params, "batch_stats": state}, batch["x"], step=step,
                              train=train, mutable=["batch_stats"] if train else False)  # fmt: skip
            logits, state = (out[0], out[1]["batch_stats"]) if train else (out, state)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), state

        return loss

    learner = metax.maml_pp(make_loss(True), query_loss_fn=make_loss(False), num_steps=2,
                            init_lr=0.1, stateful=True, takes_step=True)  # fmt: skip
    outer = optax.sgd(0.1)  # not Adam: it would amplify float32 reduction-order noise

    def tasks_of(i):
        k1, k2 = jax.random.split(jax.random.key(i))
        x = jax.random.uniform(k1, (8, 6, 28, 28, 1))
        return metax.Task({"x": x, "y": jnp.tile(jnp.arange(6) % 3, (8, 1))},
                          {"x": x[:, ::-1] + jax.random.normal(k2, x.shape) * 0.1,
                           "y": jnp.tile(jnp.arange(6) % 3, (8, 1))})  # fmt: skip

    mp = learner.init(variables["params"])
    state = variables["batch_stats"]
    want, want_info = run(
        jax.jit(metax.meta_step(learner, outer)), mp, outer, tasks_of, 5, state=state
    )
    mesh = par.task_mesh(jax.device_count())
    step = jax.jit(par.data_parallel(learner, outer, mesh))
    got, got_info = run(step, mp, outer, tasks_of, 5, mesh, state=state)
    chex.assert_trees_all_close(got, want, rtol=2e-4, atol=1e-5)
    chex.assert_trees_all_close(got_info.state, want_info.state, rtol=2e-4, atol=1e-5)
    print(
        f"maml++ per-step batch norm: {jax.device_count()} devices equal one device (float32, 5 steps)"
    )


if __name__ == "__main__":
    {"mlp": lambda: [mlp_exact(n) for n in ("maml", "maml++")], "conv4": conv4_per_step_bn}[
        sys.argv[1]
    ]()
