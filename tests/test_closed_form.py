"""Meta-gradients against closed forms on quadratic tasks, and finite differences."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import metax
from tests import quadratic as quad


def meta_grad(learner, meta_params, task):
    return jax.grad(lambda mp: learner.loss(mp, task)[0])(meta_params)


@pytest.mark.parametrize("num_steps", [1, 3])
def test_maml_sgd_matches_closed_form(x64, num_steps):
    rng = np.random.default_rng(num_steps)
    task = quad.make_task(rng)
    alpha = 0.3
    z0 = rng.normal(size=quad.DIM)
    learner = metax.maml(quad.loss, inner_opt=optax.sgd(alpha), num_steps=num_steps)
    grads = meta_grad(learner, learner.init(quad.unflatten(jnp.asarray(z0))), task)
    expected, _ = quad.lslr_closed_form(z0, {n: [alpha] * num_steps for n in quad.SIZES}, task)
    np.testing.assert_allclose(quad.flatten(grads.params), expected, rtol=1e-6, atol=1e-9)
    assert grads.hparams is None


def test_maml_one_step_textbook_form(x64):
    """One SGD step on a shared quadratic: the meta-gradient is (I - alpha A) A (phi' - c)."""
    rng = np.random.default_rng(0)
    A, c = quad.random_spd(rng), rng.normal(size=quad.DIM)
    task = metax.Task(support={"A": A, "c": c}, query={"A": A, "c": c})
    alpha, z0 = 0.1, rng.normal(size=quad.DIM)
    learner = metax.maml(quad.loss, inner_opt=optax.sgd(alpha), num_steps=1)
    grads = meta_grad(learner, learner.init(quad.unflatten(jnp.asarray(z0))), task)
    z1 = z0 - alpha * A @ (z0 - c)
    expected = (np.eye(quad.DIM) - alpha * A) @ A @ (z1 - c)
    np.testing.assert_allclose(quad.flatten(grads.params), expected, rtol=1e-6)


@pytest.mark.parametrize("first_order", [False, True])
def test_lslr_matches_closed_form_for_params_and_every_rate(x64, first_order):
    rng = np.random.default_rng(7)
    task = quad.make_task(rng)
    num_steps = 3
    z0 = rng.normal(size=quad.DIM)
    learner = metax.maml_pp(quad.loss, num_steps=num_steps, init_lr=0.1, first_order=first_order)
    mp = learner.init(quad.unflatten(jnp.asarray(z0)))
    rates = {"a": jnp.array([0.05, 0.2, 0.1]), "b": jnp.array([0.15, 0.02, 0.3])}
    mp = mp._replace(hparams=rates)
    grads = meta_grad(learner, mp, task)
    expected_z0, expected_rates = quad.lslr_closed_form(
        z0, jax.tree.map(np.asarray, rates), task, first_order=first_order
    )
    np.testing.assert_allclose(quad.flatten(grads.params), expected_z0, rtol=1e-6, atol=1e-9)
    for name in quad.SIZES:
        np.testing.assert_allclose(grads.hparams[name], expected_rates[name], rtol=1e-6, atol=1e-9)


def test_maml_pp_rates_start_at_init_lr_where_it_is_plain_maml(x64):
    rng = np.random.default_rng(5)
    task = quad.make_task(rng)
    z0 = rng.normal(size=quad.DIM)
    learner = metax.maml_pp(quad.loss, num_steps=3, init_lr=0.15)
    mp = learner.init(quad.unflatten(jnp.asarray(z0)))
    rates = {n: [0.15] * 3 for n in quad.SIZES}
    assert jax.tree.map(lambda r: r.tolist(), mp.hparams) == rates
    expected, _ = quad.lslr_closed_form(z0, rates, task)
    grads = meta_grad(learner, mp, task)
    np.testing.assert_allclose(quad.flatten(grads.params), expected, rtol=1e-6, atol=1e-9)


def test_fomaml_matches_closed_form_and_differs_from_second_order(x64):
    rng = np.random.default_rng(3)
    task = quad.make_task(rng)
    alpha, num_steps = 0.2, 2
    z0 = rng.normal(size=quad.DIM)
    params = quad.unflatten(jnp.asarray(z0))
    rates = {n: [alpha] * num_steps for n in quad.SIZES}
    fo = metax.maml(quad.loss, inner_opt=optax.sgd(alpha), num_steps=num_steps, first_order=True)
    so = metax.maml(quad.loss, inner_opt=optax.sgd(alpha), num_steps=num_steps)
    g_fo = quad.flatten(meta_grad(fo, fo.init(params), task).params)
    g_so = quad.flatten(meta_grad(so, so.init(params), task).params)
    expected_fo, _ = quad.lslr_closed_form(z0, rates, task, first_order=True)
    np.testing.assert_allclose(g_fo, expected_fo, rtol=1e-6)
    # The Hessian is nonzero, so the Jacobian term matters: they must differ.
    assert np.linalg.norm(g_fo - g_so) > 0.1 * np.linalg.norm(g_so)


def test_reptile_gradient_is_theta_minus_adapted(x64):
    rng = np.random.default_rng(11)
    task = quad.make_task(rng)
    z0 = rng.normal(size=quad.DIM)
    params = quad.unflatten(jnp.asarray(z0))
    inner = optax.sgd(0.1, momentum=0.5)
    learner = metax.reptile(quad.loss, inner_opt=inner, num_steps=4)
    grads = meta_grad(learner, learner.init(params), task)
    phi, _ = metax.adapt(quad.loss, params, task.support, inner, 4)
    np.testing.assert_allclose(
        quad.flatten(grads.params), z0 - np.asarray(quad.flatten(phi)), rtol=1e-10
    )
    # Reptile's direction with SGD: phi_k is the closed-form gradient-descent iterate.
    A_s, c_s = task.support["A"], task.support["c"]
    z, v = z0.copy(), np.zeros_like(z0)
    for _ in range(4):
        v = A_s @ (z - c_s) + 0.5 * v
        z = z - 0.1 * v
    np.testing.assert_allclose(np.asarray(quad.flatten(phi)), z, rtol=1e-10)


def mlp_loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    pred = h @ params["w2"] + params["b2"]
    return jnp.mean((pred - batch["y"]) ** 2)


def mlp_setup(rng):
    params = {
        "w1": rng.normal(size=(1, 8)),
        "b1": rng.normal(size=(8,)) * 0.1,
        "w2": rng.normal(size=(8, 1)) / 3,
        "b2": np.zeros(1),
    }

    def batch(n):
        x = rng.uniform(-2, 2, size=(n, 1))
        return {"x": x, "y": np.sin(x) * 2.0}

    return jax.tree.map(jnp.asarray, params), metax.Task(support=batch(6), query=batch(6))


def test_pretrain_loss_is_the_loss_on_support_and_query_pooled(x64):
    """The baseline's training loss: ``loss_fn`` on both sets as one batch (6 + 6 examples,
    so the mean of the two means), with no inner loop; the query loss is reported alone."""
    params, task = mlp_setup(np.random.default_rng(2))
    learner = metax.pretrain(mlp_loss, inner_opt=optax.sgd(0.05), num_steps=3)
    mp = learner.init(params)
    (value, aux), grads = jax.value_and_grad(lambda m: learner.loss(m, task), has_aux=True)(mp)
    support, query = mlp_loss(params, task.support), mlp_loss(params, task.query)
    np.testing.assert_allclose(value, 0.5 * (support + query), rtol=1e-12)
    g_support, g_query = (jax.grad(mlp_loss)(params, b) for b in (task.support, task.query))
    want = jax.tree.map(lambda a, b: 0.5 * (a + b), g_support, g_query)
    chex.assert_trees_all_close(grads.params, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(aux.query_loss, query, rtol=1e-12)
    assert aux.adapt.support_loss.shape == (0,)


@pytest.mark.parametrize(
    "make",
    [
        functools.partial(metax.maml, mlp_loss, inner_opt=optax.sgd(0.05), num_steps=3),
        functools.partial(metax.maml_pp, mlp_loss, num_steps=3, init_lr=0.05),
        functools.partial(
            metax.maml, mlp_loss, inner_opt=optax.adam(0.05, eps_root=1e-8), num_steps=3
        ),
    ],
    ids=["maml-sgd", "maml++-lslr", "maml-adam"],
)
def test_mlp_meta_gradient_passes_finite_differences(x64, make):
    params, task = mlp_setup(np.random.default_rng(0))
    learner = make()
    weights = jnp.array([0.2, 0.3, 0.5])
    extra = {"step_weights": weights} if learner.init(params).hparams is not None else {}

    def outer(mp):
        return learner.loss(mp, task, **extra)[0]

    check_grads(outer, (learner.init(params),), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_multi_step_loss_is_weighted_sum_of_per_step_query_losses(x64):
    params, task = mlp_setup(np.random.default_rng(1))
    learner = metax.maml_pp(mlp_loss, num_steps=3, init_lr=0.05)
    mp = learner.init(params)
    weights = jnp.array([0.1, 0.3, 0.6])
    total, aux = learner.loss(mp, task, step_weights=weights)
    per_step = []
    p = params
    for i in range(3):
        g = jax.grad(mlp_loss)(p, task.support)
        p = jax.tree.map(lambda w, d, lr, i=i: w - lr[i] * d, p, g, mp.hparams)
        per_step.append(mlp_loss(p, task.query))
    np.testing.assert_allclose(aux.adapt.query_loss, per_step, rtol=1e-10)
    np.testing.assert_allclose(total, np.dot(weights, per_step), rtol=1e-10)
    chex.assert_trees_all_close(aux.query_loss, per_step[-1])
