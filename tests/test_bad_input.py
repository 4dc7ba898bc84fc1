"""Bad input gets a clear error that names the bad value."""

import jax.numpy as jnp
import optax
import pytest

import metax


def loss(w, b):
    return jnp.mean((w - b) ** 2)


W = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
BATCH = jnp.ones(3)


@pytest.mark.parametrize(
    "num_steps, err, match",
    [
        (0, ValueError, "num_steps must be >= 1, got 0"),
        (-2, ValueError, "num_steps must be >= 1, got -2"),
        (2.0, TypeError, r"num_steps must be a Python int, got 2.0"),
    ],
)
def test_num_steps_below_one(num_steps, err, match):
    with pytest.raises(err, match=match):
        metax.adapt(loss, 0.0, BATCH, optax.sgd(0.1), num_steps)
    with pytest.raises(err, match=match):
        metax.maml(loss, inner_opt=optax.sgd(0.1), num_steps=num_steps)
    with pytest.raises(err, match=match):
        metax.maml_pp(loss, num_steps=num_steps, init_lr=0.1)
    with pytest.raises(err, match=match):
        metax.reptile(loss, inner_opt=optax.sgd(0.1), num_steps=num_steps)


def test_non_scalar_loss():
    with pytest.raises(
        ValueError, match=r"must return a scalar loss, got an array of shape \(3,\)"
    ):
        metax.adapt(lambda w, b: (w - b) ** 2, 0.0, BATCH, optax.sgd(0.1), 1)


def test_tuple_loss_without_has_aux():
    with pytest.raises(ValueError, match="pass has_aux=True"):
        metax.adapt(lambda w, b: (loss(w, b), {}), 0.0, BATCH, optax.sgd(0.1), 1)


def test_has_aux_with_scalar_loss():
    with pytest.raises(ValueError, match=r"must return \(loss, aux\)"):
        metax.adapt(loss, 0.0, BATCH, optax.sgd(0.1), 1, has_aux=True)


def test_hparams_structure_must_match_params():
    learner = metax.maml_pp(
        lambda p, b: loss(p["a"], b[:2]) + loss(p["b"], b), num_steps=2, init_lr=0.1
    )
    mp = learner.init(W)
    bad = mp._replace(hparams={"a": jnp.ones(2)})
    task = metax.Task(support=BATCH, query=BATCH)
    with pytest.raises(ValueError, match="same pytree structure as the parameters"):
        learner.loss(bad, task)


def test_hparams_need_the_step_axis():
    rates = {"a": jnp.ones(3), "b": jnp.ones(3)}
    with pytest.raises(
        ValueError, match=r"leading axis of length 2; leaf hparams\['a'\] has shape \(3,\)"
    ):
        metax.adapt(
            lambda p, b: loss(p["a"], b[:2]),
            W,
            BATCH,
            metax.scale_by_learned_lr(),
            2,
            hparams=rates,
        )


def test_hparams_with_an_optimizer_that_ignores_them():
    rates = {"a": jnp.ones(2), "b": jnp.ones(2)}
    plain = optax.GradientTransformation(*optax.sgd(0.1)[:2])  # a transform without extra args
    with pytest.raises(TypeError, match="would ignore them"):
        metax.adapt(lambda p, b: loss(p["a"], b[:2]), W, BATCH, plain, 2, hparams=rates)


def test_tasks_without_task_axis_or_with_mismatched_sizes():
    learner = metax.maml(loss, inner_opt=optax.sgd(0.1), num_steps=1)
    mp = learner.init(jnp.float32(0.0))
    step = metax.meta_step(learner, optax.sgd(0.1))
    opt_state = optax.sgd(0.1).init(mp)
    with pytest.raises(ValueError, match=r"tasks\.support is a scalar; .* leading task axis"):
        step(mp, opt_state, metax.Task(support=jnp.float32(1.0), query=jnp.ones((4, 3))))
    with pytest.raises(ValueError, match=r"tasks\.support: 4, tasks\.query: 5"):
        step(mp, opt_state, metax.Task(support=jnp.ones((4, 3)), query=jnp.ones((5, 3))))
    with pytest.raises(TypeError, match=r"must be a metax\.Task"):
        step(mp, opt_state, (jnp.ones((4, 3)), jnp.ones((4, 3))))


def test_step_weights_shape_and_learner_kind():
    task = metax.Task(support=BATCH, query=BATCH)
    pp = metax.maml_pp(loss, num_steps=3, init_lr=0.1)
    with pytest.raises(ValueError, match=r"step_weights must have shape \(3,\).*got \(2,\)"):
        pp.loss(pp.init(jnp.float32(0.0)), task, step_weights=jnp.ones(2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: metax.maml(loss, inner_opt=optax.sgd(0.1), num_steps=3),
        lambda: metax.reptile(loss, inner_opt=optax.sgd(0.1), num_steps=3),
        lambda: metax.pretrain(loss, inner_opt=optax.sgd(0.1), num_steps=3),
    ],
)
def test_learners_without_a_multi_step_loss_ignore_step_weights(make):
    """One contract: every learner accepts the same keywords (as optax ignores extra args)."""
    learner = make()
    mp = learner.init(jnp.float32(0.5))
    task = metax.Task(support=BATCH, query=2.0 * BATCH)
    plain, _ = learner.loss(mp, task)
    weighted, _ = learner.loss(mp, task, step_weights=jnp.array([5.0, 0.0, 1.0]), state=None)
    assert float(plain) == float(weighted)
    adapted, _ = learner.adapt(mp, task.support, step_weights=jnp.ones(3), state=None)
    assert float(adapted) != 0.5


def test_msl_weights_and_annealing_arguments():
    with pytest.raises(ValueError, match="anneal_epochs must be > 0, got 0"):
        metax.msl_weights(3, 0, anneal_epochs=0)
    with pytest.raises(ValueError, match="first_order_epochs must be >= 0, got -1"):
        metax.derivative_order_annealing(lambda first_order: None, first_order_epochs=-1)
