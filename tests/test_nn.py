"""Backbones: convolution strategies agree, pooling gradients, per-step batch norm."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax
from metax.nn import Conv4, StepBatchNorm, max_pool_2x2
from metax.nn.conv import (
    conv3x3_patches,
    conv3x3_patches_autodiff,
    conv3x3_xla,
    resolve_strategy,
)


def test_patches_convolution_equals_xla_convolution_values_and_gradients(x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 9, 7, 4)))
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 5)))
    np.testing.assert_allclose(conv3x3_patches(x, k), conv3x3_xla(x, k), rtol=1e-10)
    g1 = jax.grad(lambda a, b: jnp.sum(jnp.sin(conv3x3_patches(a, b))), argnums=(0, 1))(x, k)
    g2 = jax.grad(lambda a, b: jnp.sum(jnp.sin(conv3x3_xla(a, b))), argnums=(0, 1))(x, k)
    chex.assert_trees_all_close(g1, g2, rtol=1e-10)
    # Under vmap with per-task kernels, too.
    xs, ks = jnp.stack([x, 2 * x]), jnp.stack([k, -k])
    np.testing.assert_allclose(
        jax.vmap(conv3x3_patches)(xs, ks), jax.vmap(conv3x3_xla)(xs, ks), rtol=1e-10
    )


def test_hand_written_convolution_derivatives_equal_jax_ones_to_third_order(x64):
    """conv3x3_patches' custom VJPs (and theirs) against JAX's derivatives of the same matmul."""
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.normal(size=(2, 3, 6, 5, 3)))  # 2 tasks, each with its own kernels
    k1s = jnp.asarray(rng.normal(size=(2, 3, 3, 3, 4)))
    k2s = jnp.asarray(rng.normal(size=(2, 3, 3, 4, 2)))

    def net(conv, x, k1, k2):
        return jnp.sum(jnp.sin(conv(jnp.tanh(conv(x, k1)), k2)))

    def inner_step(conv, x, k1, k2):  # one SGD step on the kernels, then a loss: MAML's shape
        g1, g2 = jax.grad(net, argnums=(2, 3))(conv, x, k1, k2)
        return net(conv, x, k1 - 0.1 * g1, k2 - 0.1 * g2) + jnp.sum(
            jax.grad(net, 1)(conv, x, k1, k2) ** 2
        )

    def third(conv, x, k1, k2):
        return jnp.sum(jax.grad(inner_step, argnums=2)(conv, x, k1, k2) ** 2)

    for order, f in enumerate((net, inner_step, third), start=1):

        def per_task(conv, f=f):
            return jax.jit(jax.vmap(jax.grad(lambda *a: f(conv, *a), argnums=(0, 1, 2))))

        fast, reference = (
            per_task(conv3x3_patches)(xs, k1s, k2s),
            per_task(conv3x3_patches_autodiff)(xs, k1s, k2s),
        )
        chex.assert_trees_all_close(fast, reference, rtol=1e-9, atol=1e-9 * order)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda x: conv3x3_patches(x, k1s[0]), (xs[0],), (xs[0],))
    jvp = jax.jvp(lambda x: conv3x3_patches_autodiff(x, k1s[0]), (xs[0],), (xs[0],))[1]
    np.testing.assert_allclose(jvp, conv3x3_xla(xs[0], k1s[0]), rtol=1e-10)


def test_conv_strategy_names():
    assert resolve_strategy("auto") == ("patches" if jax.default_backend() == "cpu" else "xla")
    with pytest.raises(ValueError, match="unknown convolution strategy 'fft'"):
        resolve_strategy("fft")


@pytest.mark.parametrize("method", ["select", "reduce_window"])
def test_max_pool_gradients_are_the_same_jitted_and_eager(method):
    """Ties (ReLU zeros, equal pixels) must not make the jitted gradients differ."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(np.round(rng.normal(size=(4, 9, 8, 3)), 1))  # many ties, odd height
    x = x.at[:, :2, :2].set(1.0)

    def f(a):
        return jnp.sum(jnp.sin(max_pool_2x2(nn.relu(a), method=method)) ** 2)

    np.testing.assert_array_equal(jax.grad(f)(x), jax.jit(jax.grad(f))(x))
    v = jnp.asarray(rng.normal(size=x.shape))

    def hvp(a):
        return jax.jvp(jax.grad(f), (a,), (v,))[1]

    def grad_of_grad(a):  # reverse over reverse, as in MAML's meta-gradient
        return jax.grad(lambda b: jnp.vdot(jax.grad(f)(b), v))(a)

    # Fusion may change the last bit; a lost or moved window would change whole entries.
    np.testing.assert_allclose(hvp(x), jax.jit(hvp)(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_of_grad(x), jax.jit(grad_of_grad)(x), rtol=1e-6, atol=1e-7)


def test_select_pool_equals_reduce_window_values_gradients_and_tie_rule():
    x = jax.random.normal(jax.random.key(0), (2, 7, 10, 3))  # odd height: last row dropped
    np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
    assert max_pool_2x2(x).shape == (2, 3, 5, 3)
    weights = jnp.arange(45.0).reshape(3, 5, 3)

    def grad(method):
        return jax.grad(lambda a: jnp.sum(max_pool_2x2(a, method=method) * weights))

    np.testing.assert_array_equal(grad("select")(x), grad("reduce_window")(x))
    tied = jnp.asarray([[0.0, 2.0], [2.0, 2.0]]).reshape(1, 2, 2, 1)  # first maximum wins
    expected = jnp.asarray([[0.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
    for method in ("select", "reduce_window"):
        tied_grad = jax.grad(lambda a, m=method: max_pool_2x2(a, method=m).sum())(tied)
        np.testing.assert_array_equal(tied_grad, expected)
    with pytest.raises(ValueError, match="unknown pooling method 'avg'"):
        max_pool_2x2(x, method="avg")
    with pytest.raises(ValueError, match=r"expects \[N, H, W, C\], got shape \(7, 10, 3\)"):
        max_pool_2x2(x[0])


@pytest.mark.parametrize("pooling", ["select", "reduce_window"])
def test_conv4_inner_gradient_under_scan_and_jit_equals_the_eager_one(pooling, x64):
    """A reshape-and-max pool failed this: fused batch norm rounded differently from the max."""
    model = Conv4(num_classes=5, pooling=pooling)
    x = jax.random.uniform(jax.random.key(1), (5, 28, 28, 1))
    y = jnp.arange(5)
    params = jax.tree.map(
        lambda a: a.astype(jnp.float64), model.init(jax.random.key(0), x)["params"]
    )

    def loss(p):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    eager = jax.grad(loss)(params)
    reference = jax.grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(
            Conv4(num_classes=5, pooling="reduce_window").apply({"params": p}, x), y
        ).mean()
    )(params)
    in_scan = jax.jit(
        lambda p: jax.lax.scan(lambda c, _: (c, jax.grad(loss)(c)), p, None, length=1)[1]
    )(params)
    in_scan = jax.tree.map(lambda a: a[0], in_scan)
    chex.assert_trees_all_close(in_scan, eager, rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(eager, reference, rtol=1e-9, atol=1e-12)


def test_conv4_strategies_give_the_same_network():
    x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    a = Conv4(num_classes=5, features=8, conv_strategy="patches")
    b = Conv4(num_classes=5, features=8, conv_strategy="xla", pooling="reduce_window")
    variables = a.init(jax.random.key(1), x)
    np.testing.assert_allclose(a.apply(variables, x), b.apply(variables, x), rtol=1e-4, atol=1e-5)


def test_per_step_batch_policy_uses_step_weights_and_each_batch_own_statistics():
    bn = StepBatchNorm(num_steps=3, policy="per_step_batch")
    x = jax.random.normal(jax.random.key(0), (16, 4)) * 3.0 + 1.0
    variables = bn.init(jax.random.key(1), x)
    assert set(variables) == {"params"} and variables["params"]["scale"].shape == (3, 4)
    params = {"scale": jnp.arange(1.0, 13.0).reshape(3, 4), "bias": jnp.full((3, 4), 0.5)}
    normalised = (x - x.mean(0)) / jnp.sqrt(x.var(0) + 1e-5)
    for step in range(4):  # a step past the last reuses the last step's weights
        want = normalised * params["scale"][min(step, 2)] + 0.5
        for train in (True, False):  # support and query alike: the batch's own statistics
            got = bn.apply({"params": params}, x, step=step, train=train)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_per_step_batch_norm_parameters_and_statistics_are_per_step():
    bn = StepBatchNorm(num_steps=3, policy="per_step", momentum=0.9)
    x = jax.random.normal(jax.random.key(0), (16, 4)) * 3.0 + 1.0
    variables = bn.init(jax.random.key(1), x)
    assert variables["params"]["scale"].shape == (3, 4)
    assert variables["batch_stats"]["mean"].shape == (3, 4)
    stats = variables["batch_stats"]
    for step, data in enumerate([x, 2 * x, x - 5]):
        _, upd = bn.apply(
            {"params": variables["params"], "batch_stats": stats},
            data,
            step=step,
            train=True,
            mutable=["batch_stats"],
        )
        stats = upd["batch_stats"]
    means = np.asarray(stats["mean"])
    expected = [0.1 * np.mean(np.asarray(d), 0) for d in (x, 2 * x, x - 5)]
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)

    # Evaluation normalises with the statistics of its own step; affine params per step.
    params = {"scale": jnp.array([[1.0] * 4, [2.0] * 4, [3.0] * 4]), "bias": jnp.zeros((3, 4))}
    probe = jnp.ones((2, 4))
    outs = [
        bn.apply({"params": params, "batch_stats": stats}, probe, step=s, train=False)
        for s in range(3)
    ]
    for s in range(3):
        want = (1.0 - stats["mean"][s]) / jnp.sqrt(stats["var"][s] + 1e-5) * (s + 1.0)
        np.testing.assert_allclose(outs[s][0], want, rtol=1e-5)
    assert not np.allclose(outs[0], outs[1])
    # The default momentum 0 stores exactly the support batch's statistics.
    exact = StepBatchNorm(num_steps=3, policy="per_step")
    _, upd = exact.apply(variables, 2 * x, step=1, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(
        upd["batch_stats"]["mean"][1], np.mean(np.asarray(2 * x), 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        upd["batch_stats"]["var"][1], np.var(np.asarray(2 * x), 0), rtol=1e-4
    )
    # Steps past the last reuse it.
    np.testing.assert_allclose(
        bn.apply({"params": params, "batch_stats": stats}, probe, step=7, train=False), outs[2]
    )


def conv4_stateful_loss(model, *, train=True):
    """Support: normalised with its own statistics, stored per step; query (train=False):
    normalised with the stored support statistics of its step."""

    def loss(params, state, batch, step):
        variables = {"params": params, "batch_stats": state}
        if train:
            logits, upd = model.apply(
                variables, batch["x"], step=step, train=True, mutable=["batch_stats"]
            )
            state = upd["batch_stats"]
        else:
            logits = model.apply(variables, batch["x"], step=step, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), state

    return loss


def test_query_examples_never_reach_the_per_step_statistics():
    model = Conv4(num_classes=3, features=4, num_steps=2, bn_policy="per_step")
    x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    variables = model.init(jax.random.key(1), x)
    learner = metax.maml_pp(
        conv4_stateful_loss(model),
        query_loss_fn=conv4_stateful_loss(model, train=False),
        num_steps=2,
        init_lr=0.1,
        stateful=True,
        takes_step=True,
    )
    mp = learner.init(variables["params"])
    support = {"x": x, "y": jnp.arange(6) % 3}
    q1 = {"x": jax.random.normal(jax.random.key(2), (6, 28, 28, 1)), "y": jnp.arange(6) % 3}
    q2 = {"x": q1["x"] * 10 + 3, "y": q1["y"]}
    _, a1 = learner.loss(mp, metax.Task(support, q1), state=variables["batch_stats"])
    _, a2 = learner.loss(mp, metax.Task(support, q2), state=variables["batch_stats"])
    chex.assert_trees_all_equal(a1.adapt.state, a2.adapt.state)
    # Each step's statistics moved, and differently (the parameters changed between steps).
    first = a1.adapt.state["StepBatchNorm_0"]["mean"]
    assert np.all(np.abs(first) > 0) and not np.allclose(first[0], first[1])
    # The query is scored in evaluation mode: its loss is the mean of its halves' losses.
    halves = [jax.tree.map(lambda a, h=h: a[3 * h : 3 * h + 3], q1) for h in (0, 1)]
    parts = [
        learner.loss(mp, metax.Task(support, q), state=variables["batch_stats"])[0] for q in halves
    ]
    np.testing.assert_allclose(
        learner.loss(mp, metax.Task(support, q1), state=variables["batch_stats"])[0],
        np.mean(parts),
        rtol=1e-5,
    )


@pytest.mark.parametrize("policy", ["batch", "per_step"])
def test_resnet12_strategies_agree_and_per_step_parameters_exist(policy):
    from metax.nn import ResNet12

    x = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    a = ResNet12(
        num_classes=5, widths=(4, 4, 8, 8), num_steps=2, bn_policy=policy, conv_strategy="patches"
    )
    b = a.clone(conv_strategy="xla")
    variables = a.init(jax.random.key(1), x)
    out_a = (
        a.apply(variables, x, step=1, mutable=["batch_stats"])[0]
        if policy == "per_step"
        else a.apply(variables, x)
    )
    out_b = (
        b.apply(variables, x, step=1, mutable=["batch_stats"])[0]
        if policy == "per_step"
        else b.apply(variables, x)
    )
    assert out_a.shape == (4, 5)
    np.testing.assert_allclose(out_a, out_b, rtol=1e-4, atol=1e-5)
    scales = [
        v
        for k, v in jax.tree_util.tree_leaves_with_path(variables["params"])
        if "scale" in jax.tree_util.keystr(k)
    ]
    assert len(scales) == 16 and all(
        s.shape[0] == (2 if policy == "per_step" else s.shape[0]) for s in scales
    )
