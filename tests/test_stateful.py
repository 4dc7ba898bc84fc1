"""Stateful losses: model state and the inner step index thread through the scan."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax

NUM_STEPS = 3


def stateful_loss(params, state, batch, step):
    """Per-step bias (like MAML++'s per-step BN weights) and per-step running means."""
    x, y = batch
    pred = x * params["w"] + params["bias"][step]
    new_state = state.at[step].set(0.9 * state[step] + 0.1 * jnp.mean(x))
    return jnp.mean((pred - y) ** 2), new_state


def make_task(key, n=8):
    kx, kq = jax.random.split(key)
    x = jax.random.normal(kx, (n,))
    xq = jax.random.normal(kq, (n,)) + 5.0
    return metax.Task(support=(x, 2 * x + 1), query=(xq, 2 * xq + 1))


PARAMS = {"w": jnp.float32(0.5), "bias": jnp.zeros(NUM_STEPS)}
STATE = jnp.zeros(NUM_STEPS)


def test_each_step_sees_its_own_index_and_state_slot():
    task = make_task(jax.random.key(0))
    adapted, info = metax.adapt(
        stateful_loss,
        PARAMS,
        task.support,
        optax.sgd(0.1),
        NUM_STEPS,
        stateful=True,
        takes_step=True,
        state=STATE,
    )
    np.testing.assert_allclose(
        info.state, np.full(NUM_STEPS, 0.1 * float(jnp.mean(task.support[0]))), rtol=1e-6
    )
    # Step i's gradient only reaches bias[i]: bias[i] moved by exactly one SGD step,
    # taken at the parameters of step i.
    p = dict(PARAMS)
    for i in range(NUM_STEPS):
        g = jax.grad(lambda q, i=i: stateful_loss(q, STATE, task.support, i)[0])(p)
        p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
    np.testing.assert_allclose(adapted["bias"], p["bias"], rtol=1e-6)
    assert np.all(np.asarray(adapted["bias"]) != 0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: metax.maml(
            stateful_loss,
            inner_opt=optax.sgd(0.1),
            num_steps=NUM_STEPS,
            stateful=True,
            takes_step=True,
        ),
        lambda: metax.maml_pp(
            stateful_loss, num_steps=NUM_STEPS, init_lr=0.1, stateful=True, takes_step=True
        ),
    ],
)
def test_query_examples_never_enter_the_state(make):
    learner = make()
    task = make_task(jax.random.key(1))
    other_query = (task.query[0] * 3.0 - 7.0, task.query[1])
    _, aux1 = learner.loss(learner.init(PARAMS), task, state=STATE)
    _, aux2 = learner.loss(learner.init(PARAMS), task._replace(query=other_query), state=STATE)
    np.testing.assert_array_equal(aux1.adapt.state, aux2.adapt.state)
    np.testing.assert_allclose(aux1.adapt.state, 0.1 * float(jnp.mean(task.support[0])), rtol=1e-6)


def test_query_is_scored_with_the_last_step_index():
    learner = metax.maml(
        stateful_loss, inner_opt=optax.sgd(0.1), num_steps=NUM_STEPS, stateful=True, takes_step=True
    )
    task = make_task(jax.random.key(2))
    loss, _ = learner.loss(learner.init(PARAMS), task, state=STATE)
    adapted, info = learner.adapt(learner.init(PARAMS), task.support, state=STATE)
    expected, _ = stateful_loss(adapted, info.state, task.query, NUM_STEPS - 1)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_multi_step_loss_scores_each_step_with_its_own_index():
    """MAML++'s multi-step loss: the query after step ``i`` is scored as step ``i`` (its
    per-step bias and the state after that step), not as the last step."""
    learner = metax.maml(
        stateful_loss,
        inner_opt=optax.sgd(0.1),
        num_steps=NUM_STEPS,
        stateful=True,
        takes_step=True,
        multi_step_loss=True,
    )
    task = make_task(jax.random.key(5))
    weights = jnp.full(NUM_STEPS, 1.0 / NUM_STEPS)
    _, aux = learner.loss(learner.init(PARAMS), task, state=STATE, step_weights=weights)
    p, s, expected = dict(PARAMS), STATE, []
    for i in range(NUM_STEPS):
        (_, s), g = jax.value_and_grad(stateful_loss, has_aux=True)(p, s, task.support, i)
        p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
        expected.append(float(stateful_loss(p, s, task.query, i)[0]))
    np.testing.assert_allclose(aux.adapt.query_loss, expected, rtol=1e-5)


def running_mean_loss(params, state, batch):
    """Training mode: centre ``x * w`` with its own batch mean and store that mean in the
    state (like batch norm's running statistic, it depends on the weights)."""
    x, y = batch
    h = x * params["w"]
    pred = h - jnp.mean(h) + params["b"]
    return jnp.mean((pred - y) ** 2), 0.5 * state + 0.5 * jnp.mean(h)


def running_mean_eval(params, state, batch):
    """Evaluation mode: centre with the stored statistic."""
    x, y = batch
    pred = x * params["w"] - state + params["b"]
    return jnp.mean((pred - y) ** 2), state


def test_no_meta_gradient_flows_through_the_model_state(x64):
    """The stored statistic depends on the weights and scores the query, yet the state is
    threaded without gradient: the meta-gradient is the hand-unrolled one with the state
    a constant, which differs from the gradient through the state."""
    xs, xq = jnp.linspace(0.5, 2.0, 8), jnp.linspace(3.0, 6.0, 8)
    task = metax.Task(support=(xs, 2 * xs + 1), query=(xq, 2 * xq + 1))
    params = {"w": jnp.float64(0.5), "b": jnp.float64(0.2)}
    learner = metax.maml(
        running_mean_loss,
        inner_opt=optax.sgd(0.1),
        num_steps=2,
        stateful=True,
        query_loss_fn=running_mean_eval,
    )
    got = jax.grad(lambda m: learner.loss(m, task, state=jnp.float64(0.0))[0])(learner.init(params))

    def unrolled(p, through_state):
        s = jnp.float64(0.0)
        for _ in range(2):
            (_, new_s), g = jax.value_and_grad(running_mean_loss, has_aux=True)(p, s, task.support)
            s = new_s if through_state else jax.lax.stop_gradient(new_s)
            p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
        return running_mean_eval(p, s, task.query)[0]

    want, through = jax.grad(unrolled)(params, False), jax.grad(unrolled)(params, True)
    for key in params:
        np.testing.assert_allclose(got.params[key], want[key], rtol=1e-10, atol=1e-12)
    assert abs(float(through["w"] - want["w"])) > 0.1 * abs(float(want["w"]))


def test_meta_step_returns_task_mean_state_and_no_gradient_flows_into_it():
    learner = metax.maml(
        stateful_loss, inner_opt=optax.sgd(0.1), num_steps=NUM_STEPS, stateful=True, takes_step=True
    )
    tasks = jax.vmap(make_task)(jax.random.split(jax.random.key(3), 4))
    outer = optax.sgd(0.1)
    mp = learner.init(PARAMS)
    _, _, info = jax.jit(metax.meta_step(learner, outer))(mp, outer.init(mp), tasks, state=STATE)
    expected = 0.1 * jnp.mean(jax.vmap(lambda t: jnp.mean(t.support[0]))(tasks))
    np.testing.assert_allclose(info.state, np.full(NUM_STEPS, expected), rtol=1e-5)


def test_stateful_without_initial_state_is_a_clear_error():
    with pytest.raises(ValueError, match="needs the initial model state"):
        metax.adapt(
            stateful_loss,
            PARAMS,
            make_task(jax.random.key(0)).support,
            optax.sgd(0.1),
            2,
            stateful=True,
        )
