"""Fast and slow parameters (ANIL, BOIL, CAVIA) and Meta-SGD: exact against hand-unrolled loops."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax
from tests.test_meta_step import init_mlp, sample_tasks

HEAD = {"w1": False, "b1": False, "w2": True, "b2": True}
ALPHA, STEPS = 0.3, 2


def ctx_mlp_loss(params, batch):
    """A tanh MLP whose input is concatenated with a context vector (CAVIA's model)."""
    ctx = jnp.broadcast_to(params["ctx"], (batch["x"].shape[0], params["ctx"].shape[0]))
    h = jnp.tanh(jnp.concatenate([batch["x"], ctx], -1) @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - batch["y"]) ** 2)


def mlp_loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - batch["y"]) ** 2)


def unrolled_meta_grad(loss, params, task, fast, *, start=lambda p: p):
    """Hand-written inner loop: SGD on the keys in ``fast`` only, then the query loss."""

    def outer(p):
        p = start(p)
        for _ in range(STEPS):
            g = jax.grad(loss)(p, task.support)
            p = {k: v - ALPHA * g[k] if k in fast else v for k, v in p.items()}
        return loss(p, task.query)

    return jax.grad(outer)(params)


def one_task(seed=0, dtype=jnp.float64):
    tasks = sample_tasks(jax.random.key(seed), 1)
    return jax.tree.map(lambda x: x[0].astype(dtype), tasks)


@pytest.mark.parametrize("name", ["anil", "boil"])
def test_head_or_body_only_meta_gradient_is_exact(x64, name):
    params = jax.tree.map(lambda x: x.astype(jnp.float64), init_mlp(jax.random.key(0), hidden=6))
    task = one_task()
    make = {"anil": metax.anil, "boil": metax.boil}[name]
    learner = make(mlp_loss, head_mask=HEAD, inner_opt=optax.sgd(ALPHA), num_steps=STEPS)
    got = jax.grad(lambda m: learner.loss(m, task)[0])(learner.init(params))
    fast = {k for k, head in HEAD.items() if head == (name == "anil")}
    want = unrolled_meta_grad(mlp_loss, params, task, fast)
    chex.assert_trees_all_close(got.params, want, rtol=1e-10, atol=1e-12)
    # both parts receive meta-gradient (slow ones through the query loss and the inner steps)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(got.params))


@pytest.mark.parametrize("name", ["anil", "boil"])
def test_only_the_chosen_parameters_move_in_the_inner_loop(name):
    params = init_mlp(jax.random.key(1))
    make = {"anil": metax.anil, "boil": metax.boil}[name]
    learner = make(mlp_loss, head_mask=HEAD, inner_opt=optax.sgd(ALPHA), num_steps=STEPS)
    adapted, _ = learner.adapt(learner.init(params), one_task(1, jnp.float32).support)
    for key, head in HEAD.items():
        moved = not np.array_equal(adapted[key], params[key])
        assert moved == (head == (name == "anil")), key


def test_cavia_adapts_only_the_context_from_zero_and_is_exact(x64):
    k1, k2 = jax.random.split(jax.random.key(2))
    params = {
        "ctx": jnp.full(3, 7.0),  # its value never matters: reset to zero for each task
        "w1": jax.random.normal(k1, (4, 6), jnp.float64),
        "b1": jnp.zeros(6),
        "w2": jax.random.normal(k2, (6, 1), jnp.float64) / 3,
        "b2": jnp.zeros(1),
    }
    task = one_task(3)
    context = {k: k == "ctx" for k in params}
    learner = metax.cavia(
        ctx_mlp_loss, context_mask=context, inner_opt=optax.sgd(ALPHA), num_steps=STEPS
    )
    mp = learner.init(params)
    got = jax.grad(lambda m: learner.loss(m, task)[0])(mp)
    zero_ctx = lambda p: {**p, "ctx": jnp.zeros_like(p["ctx"])}  # noqa: E731
    want = unrolled_meta_grad(ctx_mlp_loss, params, task, {"ctx"}, start=zero_ctx)
    chex.assert_trees_all_close(got.params, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(got.params["ctx"], 0.0)
    adapted, _ = learner.adapt(mp, task.support)
    assert not np.allclose(adapted["ctx"], 0.0) and not np.allclose(adapted["ctx"], 7.0)
    p = zero_ctx(params)  # test-time fine-tuning starts from zero too, not from the 7s
    for _ in range(STEPS):
        p = {**p, "ctx": p["ctx"] - ALPHA * jax.grad(ctx_mlp_loss)(p, task.support)["ctx"]}
    np.testing.assert_allclose(adapted["ctx"], p["ctx"], rtol=1e-10, atol=1e-12)
    for key in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(adapted[key], params[key])


def test_meta_sgd_meta_gradient_for_every_rate_is_exact(x64):
    params = jax.tree.map(lambda x: x.astype(jnp.float64), init_mlp(jax.random.key(4), hidden=5))
    task = one_task(5)
    learner = metax.meta_sgd(mlp_loss, num_steps=STEPS, init_lr=0.2, per_step=True)
    mp = learner.init(params)
    rates = jax.tree.map(
        lambda r: r * jax.random.uniform(jax.random.key(6), r.shape, r.dtype, 0.5, 1.5), mp.hparams
    )
    mp = mp._replace(hparams=rates)

    def unrolled(params, rates):
        p = params
        for i in range(STEPS):
            g = jax.grad(mlp_loss)(p, task.support)
            p = jax.tree.map(lambda v, gv, r, i=i: v - r[i] * gv, p, g, rates)
        return mlp_loss(p, task.query)

    want_params, want_rates = jax.grad(unrolled, argnums=(0, 1))(params, rates)
    got = jax.grad(lambda m: learner.loss(m, task)[0])(mp)
    chex.assert_trees_all_close(got.params, want_params, rtol=1e-10, atol=1e-12)
    chex.assert_trees_all_close(got.hparams, want_rates, rtol=1e-10, atol=1e-12)
    assert jax.tree.map(jnp.shape, mp.hparams) == jax.tree.map(lambda p: (STEPS, *p.shape), params)


def test_meta_sgd_shared_rates_serve_every_step():
    learner = metax.meta_sgd(mlp_loss, num_steps=3, init_lr=0.1)
    mp = learner.init(init_mlp(jax.random.key(0)))
    assert jax.tree.leaves(mp.hparams)[0].shape[0] == 1
    task = one_task(7, jnp.float32)
    sgd = metax.maml(mlp_loss, inner_opt=optax.sgd(0.1), num_steps=3)
    chex.assert_trees_all_close(  # equal rates everywhere: plain SGD
        learner.adapt(mp, task.support)[0], sgd.adapt(mp, task.support)[0], rtol=1e-6
    )


def test_bad_masks_and_rates_are_named_before_compiling():
    params = init_mlp(jax.random.key(0))
    sgd = optax.sgd(0.1)
    with pytest.raises(ValueError, match="the mask must have the same pytree structure"):
        metax.anil(mlp_loss, head_mask={"w2": True}, inner_opt=sgd, num_steps=1).init(params)
    nothing = dict.fromkeys(params, False)
    with pytest.raises(
        ValueError, match=r"the mask adapts no parameter \(all 4 leaves are False\)"
    ):
        metax.cavia(mlp_loss, context_mask=nothing, inner_opt=sgd, num_steps=1).init(params)
    learner = metax.meta_sgd(mlp_loss, num_steps=1, init_lr=0.1)
    mp = learner.init(params)
    bad = mp._replace(hparams={**mp.hparams, "w1": jnp.ones((1, 3, 3))})
    with pytest.raises(ValueError, match=r"rate at \['w1'\] has shape \(3, 3\), which does not"):
        learner.loss(bad, one_task(0, jnp.float32))


@pytest.mark.parametrize("make", [metax.maml_pp, metax.meta_sgd])
def test_a_mask_function_sees_the_parameters_not_the_learned_rates(x64, make):
    # the rates carry a leading step axis, so a mask chosen by shape must be resolved on
    # the parameters (biases: ndim 1) and the same leaves taken from the rates
    params = jax.tree.map(lambda x: x.astype(jnp.float64), init_mlp(jax.random.key(0), hidden=6))
    task = one_task()
    by_shape = lambda p: jax.tree.map(lambda x: x.ndim == 1, p)  # noqa: E731
    got, want = (
        make(mlp_loss, num_steps=STEPS, init_lr=ALPHA, adapt_mask=mask)
        for mask in (by_shape, by_shape(params))
    )
    grad = lambda learner: jax.grad(lambda m: learner.loss(m, task)[0])(learner.init(params))  # noqa: E731
    chex.assert_trees_all_close(grad(got), grad(want), rtol=1e-12, atol=1e-14)
    adapted, _ = got.adapt(got.init(params), task.support)
    chex.assert_trees_all_equal(adapted["w1"], params["w1"])  # a weight matrix: slow
    assert float(jnp.abs(adapted["b1"] - params["b1"]).max()) > 0  # a bias: fast
