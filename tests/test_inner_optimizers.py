"""Differentiable inner optimizers against hand-unrolled references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax
from tests.test_closed_form import mlp_loss, mlp_setup

LR, STEPS = 0.05, 3


def unrolled_momentum(params, batch, *, beta=0.9):
    v = jax.tree.map(jnp.zeros_like, params)
    for _ in range(STEPS):
        g = jax.grad(mlp_loss)(params, batch)
        v = jax.tree.map(lambda v, g: beta * v + g, v, g)
        params = jax.tree.map(lambda p, v: p - LR * v, params, v)
    return params


def unrolled_adam(params, batch, *, b1=0.9, b2=0.999, eps=1e-8, eps_root=1e-8):
    m = jax.tree.map(jnp.zeros_like, params)
    s = jax.tree.map(jnp.zeros_like, params)
    for t in range(1, STEPS + 1):
        g = jax.grad(mlp_loss)(params, batch)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        s = jax.tree.map(lambda s, g: b2 * s + (1 - b2) * g * g, s, g)

        def step(p, m, s, t=t):
            m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
            return p - LR * m_hat / (jnp.sqrt(s_hat + eps_root) + eps)

        params = jax.tree.map(step, params, m, s)
    return params


@pytest.mark.parametrize(
    "inner_opt, unrolled",
    [
        (optax.sgd(LR, momentum=0.9), unrolled_momentum),
        (optax.adam(LR, eps_root=1e-8), unrolled_adam),
    ],
    ids=["momentum", "adam"],
)
def test_inner_optimizer_meta_gradient_matches_unrolled_reference(x64, inner_opt, unrolled):
    params, task = mlp_setup(np.random.default_rng(5))
    learner = metax.maml(mlp_loss, inner_opt=inner_opt, num_steps=STEPS)
    got = jax.grad(lambda mp: learner.loss(mp, task)[0])(learner.init(params)).params
    want = jax.grad(lambda p: mlp_loss(unrolled(p, task.support), task.query))(params)
    for leaf in jax.tree.leaves(got):
        assert np.all(np.isfinite(leaf))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10), got, want)


def test_chained_inner_optimizer_with_learned_rates(x64):
    """Adam directions scaled by learned per-step rates (an Optax chain) stay exact."""
    params, task = mlp_setup(np.random.default_rng(6))
    inner = optax.chain(optax.scale_by_adam(eps_root=1e-8), metax.scale_by_learned_lr())
    learner = metax.maml_pp(mlp_loss, num_steps=STEPS, init_lr=LR, inner_opt=inner)
    got = jax.grad(lambda mp: learner.loss(mp, task)[0])(learner.init(params)).params
    want = jax.grad(lambda p: mlp_loss(unrolled_adam(p, task.support), task.query))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10), got, want)


def test_parameters_frozen_in_the_inner_loop_by_an_optax_mask(x64):
    """Antoniou et al.'s Omniglot runs keep BN weights out of the inner loop
    (``enable_inner_loop_optimizable_bn_params: false``); an ``optax.masked`` zero
    before the learned rates does that, and the meta-gradient stays exact."""
    params, task = mlp_setup(np.random.default_rng(7))
    frozen = {"w1": True, "b1": True, "w2": False, "b2": False}
    inner = optax.chain(optax.masked(optax.set_to_zero(), frozen), metax.scale_by_learned_lr())
    learner = metax.maml_pp(mlp_loss, num_steps=STEPS, init_lr=LR, inner_opt=inner)

    def unrolled(p, batch):
        for _ in range(STEPS):
            g = jax.grad(mlp_loss)(p, batch)
            p = {k: v if frozen[k] else v - LR * g[k] for k, v in p.items()}
        return p

    meta_params = learner.init(params)
    adapted, _ = learner.adapt(meta_params, task.support)
    for name in ("w1", "b1"):
        np.testing.assert_array_equal(adapted[name], params[name])
    got = jax.grad(lambda mp: learner.loss(mp, task)[0])(meta_params)
    want = jax.grad(lambda p: mlp_loss(unrolled(p, task.support), task.query))(params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10), got.params, want
    )
    assert not np.any(got.hparams["w1"]) and np.all(got.hparams["w2"] != 0)
