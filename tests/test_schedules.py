"""MAML++ schedules: multi-step-loss weights and derivative-order annealing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metax
from tests.test_closed_form import mlp_loss, mlp_setup


@pytest.mark.parametrize("num_steps", [1, 2, 5])
def test_msl_weights_start_uniform_sum_to_one_and_end_on_the_last_step(num_steps):
    anneal = 10
    weights = np.stack(
        [metax.msl_weights(num_steps, e, anneal_epochs=anneal) for e in range(0, 15)]
    )
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights[0], 1.0 / num_steps, rtol=1e-6)
    if num_steps > 1:
        assert np.all(np.diff(weights[:, -1]) >= -1e-7)  # final weight never shrinks
        assert np.all(np.diff(weights[:, 0]) <= 1e-7)  # early weights never grow
        np.testing.assert_allclose(weights[-1, :-1], 0.03 / num_steps, rtol=1e-6)
        # Halfway: early weights moved by epoch / (n * anneal) each.
        np.testing.assert_allclose(
            weights[5, 0], 1 / num_steps - 5 / (num_steps * anneal), rtol=1e-5
        )


def test_msl_weights_accept_a_traced_epoch():
    f = jax.jit(lambda e: metax.msl_weights(4, e, anneal_epochs=8))
    np.testing.assert_allclose(f(jnp.float32(3.0)), metax.msl_weights(4, 3, anneal_epochs=8))


def test_derivative_order_annealing_switches_learner_and_gradients(x64):
    params, task = mlp_setup(np.random.default_rng(0))
    sched = metax.derivative_order_annealing(
        functools.partial(metax.maml_pp, mlp_loss, num_steps=2, init_lr=0.1), first_order_epochs=2
    )
    assert [sched.for_epoch(e) is sched.first_order for e in range(4)] == [True, True, False, False]
    mp = sched.first_order.init(params)
    assert jax.tree.structure(mp) == jax.tree.structure(sched.second_order.init(params))
    g_fo = jax.grad(lambda m: sched.first_order.loss(m, task)[0])(mp)
    g_so = jax.grad(lambda m: sched.second_order.loss(m, task)[0])(mp)
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), g_fo.params, g_so.params)
    assert max(jax.tree.leaves(diff)) > 1e-3


@pytest.mark.parametrize(
    ("algo", "outer_decay", "cosine"),
    [("maml", "auto", False), ("maml", "cosine", True), ("maml++", "auto", True),
     ("maml++", "constant", False)],
)  # fmt: skip
def test_the_outer_rate_follows_outer_decay_and_a_cosine_reaches_its_floor(
    algo, outer_decay, cosine
):
    """Adam's step on a constant gradient is its rate: 1e-3 at first; with a cosine decay
    the closed form along the way and 1% of it (1e-5) at the run's last steps."""
    from metax.train.algorithms import outer_optimizer
    from metax.train.sinusoid import SinusoidConfig

    config = SinusoidConfig(algo=algo, outer_decay=outer_decay, outer_lr=1e-3, steps=100)
    opt = outer_optimizer(config)
    params = jnp.zeros(2)
    state, rates = opt.init(params), []
    for _ in range(101):
        updates, state = opt.update(jnp.ones(2), state, params)
        rates.append(-float(updates[0]))
    t = np.array([0, 50, 99, 100])
    expected = 1e-3 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t / 100))) if cosine else 1e-3
    np.testing.assert_allclose(np.array(rates)[t], expected, rtol=1e-4)


def test_an_outer_decay_for_a_learned_outer_rate_is_refused_by_name():
    from metax.train.run import build
    from metax.train.sinusoid import SinusoidConfig

    message = r"alpha-maml does not use outer_decay='cosine' \(it learns its outer rate\)"
    with pytest.raises(ValueError, match=message):
        build(SinusoidConfig(algo="alpha-maml", outer_decay="cosine"))
    with pytest.raises(ValueError, match="outer_decay must be one of auto, constant, cosine"):
        SinusoidConfig(outer_decay="linear")
