"""SGD-HD and Adam-HD: the hypergradient is the derivative of the loss w.r.t. the rate."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax
from tests import quadratic as quad
from tests.test_closed_form import mlp_loss
from tests.test_meta_step import init_mlp, sample_tasks


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_hypergradient_is_the_derivative_of_the_loss_wrt_the_rate(x64, kind):
    """After each update, ``state.hypergradient`` is ``d f(params_t) / d lr`` for the
    step that produced ``params_t``: a central finite difference in the rate agrees,
    and the rate and parameters follow the HD recursion (SGD-HD and Adam-HD)."""
    rng = np.random.default_rng(0)
    A, c = quad.random_spd(rng), rng.normal(size=quad.DIM)
    f = lambda z: 0.5 * (z - c) @ A @ (z - c)  # noqa: E731
    lr, beta = 0.05, 0.02
    opt = (metax.hypergradient_sgd if kind == "sgd" else metax.hypergradient_adam)(
        lr, hyper_lr=beta
    )
    adam = optax.scale_by_adam()
    z = jnp.asarray(rng.normal(size=quad.DIM))
    state, adam_state = opt.init(z), adam.init(z)
    assert state.learning_rate.dtype == jnp.float64

    def loss_after_step(start, direction, rate):
        return f(start - rate * direction)

    previous, previous_direction = None, None
    for _ in range(4):
        g = jax.grad(f)(z)
        updates, state = opt.update(g, state)
        if previous is None:
            assert state.hypergradient == 0 and state.learning_rate == lr
        else:
            # z = previous - lr * previous_direction, with lr the rate of that step: vary it.
            eps = 1e-6
            finite_difference = (
                loss_after_step(previous, previous_direction, lr + eps)
                - loss_after_step(previous, previous_direction, lr - eps)
            ) / (2 * eps)
            np.testing.assert_allclose(state.hypergradient, finite_difference, rtol=1e-7)
            np.testing.assert_allclose(
                state.learning_rate, lr - beta * finite_difference, rtol=1e-7
            )
        lr = float(state.learning_rate)
        direction, adam_state = (g, adam_state) if kind == "sgd" else adam.update(g, adam_state)
        np.testing.assert_allclose(updates, -lr * direction, rtol=1e-15)
        previous, previous_direction = z, direction
        z = optax.apply_updates(z, updates)
    assert lr != 0.05


@pytest.mark.parametrize("start, grows", [(1e-3, True), (0.9, False)])
def test_rate_grows_when_too_small_and_shrinks_when_overshooting(x64, start, grows):
    """On ``||z||^2`` (curvature 2) the best rate is 0.5: from 1e-3 successive gradients
    agree and the rate grows; from 0.9 each step overshoots and it shrinks."""
    opt = metax.hypergradient_sgd(start, hyper_lr=1e-3)
    z = jnp.ones(4)
    state = opt.init(z)
    for _ in range(5):
        updates, state = opt.update(2 * z, state)
        z = optax.apply_updates(z, updates)
    rate = float(state.learning_rate)
    assert (rate > 1.5 * start) if grows else (rate < 0.99 * start), rate


def test_as_the_outer_optimizer_of_a_jitted_meta_step():
    learner = metax.maml(mlp_loss, inner_opt=optax.sgd(0.05), num_steps=2)
    outer = metax.hypergradient_sgd(1e-3, hyper_lr=1e-4)
    step = jax.jit(metax.meta_step(learner, outer))
    mp = learner.init(init_mlp(jax.random.key(0)))
    opt_state = outer.init(mp)
    losses = []
    for i in range(60):
        mp, opt_state, info = step(mp, opt_state, sample_tasks(jax.random.key(i), 8))
        losses.append(float(info.loss))
    assert float(opt_state.learning_rate) > 1.3e-3  # measured 1.7e-3: the gradients agree
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_alpha_maml_rate_gradient_is_the_hypergradient_of_the_query_loss(x64):
    """Alpha-MAML: one inner rate per leaf, starting at ``init_lr`` and shared by every
    step; its meta-gradient is ``d L_query / d alpha``, the sum over the steps of the
    per-step rate derivatives (closed form on a quadratic task)."""
    rng = np.random.default_rng(5)
    task = quad.make_task(rng)
    z0, num_steps = rng.normal(size=quad.DIM), 3
    learner = metax.alpha_maml(quad.loss, num_steps=num_steps, init_lr=0.15)
    mp = learner.init(quad.unflatten(jnp.asarray(z0)))
    assert jax.tree.map(lambda r: r.tolist(), mp.hparams) == {"a": [0.15], "b": [0.15]}
    rates = {"a": 0.1, "b": 0.25}
    mp = mp._replace(hparams={n: jnp.array([r]) for n, r in rates.items()})
    grads = jax.grad(lambda m: learner.loss(m, task)[0])(mp)
    expected_z0, per_step = quad.lslr_closed_form(
        z0, {n: [r] * num_steps for n, r in rates.items()}, task
    )
    np.testing.assert_allclose(quad.flatten(grads.params), expected_z0, rtol=1e-6, atol=1e-9)
    for name in quad.SIZES:
        np.testing.assert_allclose(grads.hparams[name], [per_step[name].sum()], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"learning_rate": -0.1}, ValueError, r"learning_rate must be finite and >= 0, got -0\.1"),
        ({"hyper_lr": "0.01"}, TypeError, r"hyper_lr must be a real number, got '0\.01'"),
        ({"hyper_lr": float("nan")}, ValueError, r"hyper_lr must be finite and >= 0, got nan"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        metax.hypergradient_sgd(**({"learning_rate": 0.1, "hyper_lr": 0.01} | kwargs))
