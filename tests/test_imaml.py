"""iMAML: implicit meta-gradients against closed forms, unrolled references and finite
differences; CG reporting; custom-VJP models; stateful models; meta_step; learning."""

import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax
import metax.nn
from metax._src.linear_solve import conjugate_gradient, gradient_and_hvp
from tests import quadratic as quad
from tests.test_closed_form import mlp_loss, mlp_setup
from tests.test_meta_step import init_mlp, sample_tasks


def meta_grad(learner, meta_params, task, **extra):
    """``(grad, TaskAux)`` of the task's outer loss w.r.t. the meta-parameters."""
    return jax.grad(lambda mp: learner.loss(mp, task, **extra), has_aux=True)(meta_params)


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def quadratic_oracle(z0, task, lam):
    """Closed forms on a quadratic task: ``phi* = (A_s + lam I)^{-1} (A_s c_s + lam z0)``
    and the implicit meta-gradient ``(I + A_s / lam)^{-1} A_q (phi* - c_q)``."""
    A_s, c_s = np.asarray(task.support["A"]), np.asarray(task.support["c"])
    A_q, c_q = np.asarray(task.query["A"]), np.asarray(task.query["c"])
    eye = np.eye(quad.DIM)
    phi = np.linalg.solve(A_s + lam * eye, A_s @ c_s + lam * z0)
    query_grad = A_q @ (phi - c_q)
    return phi, query_grad, np.linalg.solve(eye + A_s / lam, query_grad)


def converged_imaml(loss=quad.loss, *, lam, inner_opt=None, **options):
    """iMAML solved to machine precision on the quadratic task: 300 inner steps (SGD 0.3
    unless ``inner_opt``), exact CG."""
    inner_opt = optax.sgd(0.3) if inner_opt is None else inner_opt
    return metax.imaml(
        loss, inner_opt=inner_opt, num_steps=300, lam=lam, cg_steps=quad.DIM, cg_tol=0.0, **options
    )


@pytest.mark.parametrize(
    "inner_opt", [optax.sgd(0.3), optax.sgd(0.1, momentum=0.5)], ids=["sgd", "momentum"]
)
@pytest.mark.parametrize("lam", [0.5, 4.0])
def test_meta_gradient_matches_closed_form(x64, inner_opt, lam):
    rng = np.random.default_rng(0)
    task = quad.make_task(rng)
    z0 = rng.normal(size=quad.DIM)
    learner = converged_imaml(lam=lam, inner_opt=inner_opt)
    mp = learner.init(quad.unflatten(jnp.asarray(z0)))
    (value, aux), grads = jax.value_and_grad(lambda m: learner.loss(m, task), has_aux=True)(mp)
    phi, _, expected = quadratic_oracle(z0, task, lam)

    np.testing.assert_allclose(quad.flatten(grads.params), expected, rtol=1e-6, atol=1e-9)
    assert grads.hparams is None
    np.testing.assert_allclose(value, quad.loss(quad.unflatten(phi), task.query), rtol=1e-10)
    # Second oracle: the true derivative of L_query(phi*(theta)), phi* in closed form.
    A_s, c_s = task.support["A"], task.support["c"]

    def outer_at_exact_inner_solution(z):
        return quad.loss(
            quad.unflatten(jnp.linalg.solve(A_s + lam * jnp.eye(quad.DIM), A_s @ c_s + lam * z)),
            task.query,
        )

    np.testing.assert_allclose(
        quad.flatten(grads.params), jax.grad(outer_at_exact_inner_solution)(z0), rtol=1e-6
    )
    # Both premises hold, and the report says so: CG (exact in DIM steps in exact
    # arithmetic) and the inner loop converged.
    assert aux.solver.cg_residual < 1e-10
    assert aux.solver.inner_grad_norm < 1e-10
    assert aux.solver.cg_iterations <= quad.DIM
    assert aux.adapt.support_loss.shape == (300,)


def test_damped_system_matches_its_closed_form(x64):
    """With ``cg_damping`` d and ``lam_damping`` e the gradient is ``((1 + d) I + A_s /
    (lam + e))^{-1} A_q (phi* - c_q)`` (the authors' code's system), phi* unchanged."""
    rng = np.random.default_rng(1)
    task = quad.make_task(rng)
    z0 = rng.normal(size=quad.DIM)
    lam, d, e = 2.0, 1.0, 10.0
    learner = converged_imaml(lam=lam, cg_damping=d, lam_damping=e)
    grads, aux = meta_grad(learner, learner.init(quad.unflatten(jnp.asarray(z0))), task)
    _, query_grad, exact = quadratic_oracle(z0, task, lam)
    A_s = np.asarray(task.support["A"])
    damped = np.linalg.solve((1 + d) * np.eye(quad.DIM) + A_s / (lam + e), query_grad)
    np.testing.assert_allclose(quad.flatten(grads.params), damped, rtol=1e-6, atol=1e-9)
    assert np.linalg.norm(damped - exact) > 0.1 * np.linalg.norm(exact)  # it is not exact
    assert aux.solver.cg_residual < 1e-10 and aux.solver.inner_grad_norm < 1e-10


def test_unrolled_proximal_maml_gradient_converges_to_implicit(x64):
    """The implicit gradient is the limit of the unrolled gradient as the inner loop
    converges. Reference: second-order differentiation through ``num_steps`` SGD steps
    on ``L_support(phi) + lam/2 ||phi - theta||^2`` from ``theta``, the same ``theta``
    being the start point and the anchor."""
    params, task = mlp_setup(np.random.default_rng(0))
    lam, lr = 2.0, 0.05

    def unrolled_outer(theta, num_steps):
        def proximal(p, batch):
            sq = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), p, theta)
            return mlp_loss(p, batch) + 0.5 * lam * sum(jax.tree.leaves(sq))

        phi, _ = metax.adapt(proximal, theta, task.support, optax.sgd(lr), num_steps)
        return mlp_loss(phi, task.query)

    errors, stationarity = {}, {}
    for num_steps in (5, 50, 500):
        reference = flat(jax.grad(unrolled_outer)(params, num_steps))
        learner = metax.imaml(
            mlp_loss,
            inner_opt=optax.sgd(lr),
            num_steps=num_steps,
            lam=lam,
            cg_steps=50,
            cg_tol=1e-12,
        )
        grads, aux = meta_grad(learner, learner.init(params), task)
        errors[num_steps] = np.linalg.norm(flat(grads.params) - reference) / np.linalg.norm(
            reference
        )
        stationarity[num_steps] = float(aux.solver.inner_grad_norm)
        assert aux.solver.cg_residual < 1e-10  # CG solved; the inner loop is what varies
    # Measured: 0.19, 3.1e-4, 6e-13, tracking the inner loop's stationarity residual.
    assert errors[5] > 0.1, errors
    assert errors[50] < 1e-2, errors
    assert errors[500] < 1e-8, errors
    assert stationarity[5] > stationarity[50] > stationarity[500] and stationarity[500] < 1e-12


def test_one_cg_step_is_the_textbook_step_and_reports_its_residual(x64):
    rng = np.random.default_rng(1)
    task = quad.make_task(rng)
    z0, lam = rng.normal(size=quad.DIM), 0.5
    mp = metax.MetaParams(params=quad.unflatten(jnp.asarray(z0)))

    def run(cg_steps, cg_tol=0.0):
        learner = metax.imaml(
            quad.loss,
            inner_opt=optax.sgd(0.3),
            num_steps=300,
            lam=lam,
            cg_steps=cg_steps,
            cg_tol=cg_tol,
        )
        grads, aux = meta_grad(learner, mp, task)
        return np.asarray(quad.flatten(grads.params)), aux.solver

    _, b, exact = quadratic_oracle(z0, task, lam)
    A = np.eye(quad.DIM) + np.asarray(task.support["A"]) / lam
    g1, info1 = run(1)
    # One CG step from 0 is the exact line search along b.
    x1 = (b @ b) / (b @ A @ b) * b
    np.testing.assert_allclose(g1, x1, rtol=1e-10)
    np.testing.assert_allclose(
        info1.cg_residual, np.linalg.norm(b - A @ x1) / np.linalg.norm(b), rtol=1e-8
    )
    assert info1.cg_residual > 0.1 and info1.cg_iterations == 1
    assert np.linalg.norm(g1 - exact) > 0.1 * np.linalg.norm(exact)

    g, info = run(quad.DIM)
    np.testing.assert_allclose(g, exact, rtol=1e-8)
    assert info.cg_residual < 1e-10

    # A tolerance stops CG early; the unrun iterations repeat the last residual.
    _, info = run(quad.DIM, cg_tol=1e-2)
    k = int(info.cg_iterations)
    assert 1 <= k < quad.DIM
    residuals = np.asarray(info.cg_residuals)
    assert residuals[k - 1] <= 1e-2 < (residuals[k - 2] if k > 1 else 1.0)
    np.testing.assert_array_equal(residuals[k:], residuals[k - 1])
    assert info.cg_residual < 2e-2


def test_cg_stops_at_non_positive_curvature_and_reports_it(x64):
    """``I + H / lam`` indefinite: CG meets ``p^T A p < 0`` at its first direction,
    takes no step and reports a relative residual of 1, never a NaN."""
    A = np.diag([1.0, 1.0, -3.0])
    b = jnp.array([0.1, 0.0, 1.0])
    x, residuals, iterations = conjugate_gradient(
        lambda u: jnp.asarray(A) @ u, b, max_steps=3, tol=0.0
    )
    np.testing.assert_array_equal(x, np.zeros(3))
    np.testing.assert_array_equal(residuals, np.ones(3))
    assert iterations == 1
    # Positive definite: CG solves in n steps and the residual history ends at ~0.
    A = np.diag([1.0, 2.0, 3.0])
    b = jnp.array([0.1, 0.5, 1.0])
    x, residuals, iterations = conjugate_gradient(
        lambda u: jnp.asarray(A) @ u, b, max_steps=3, tol=0.0
    )
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-12)
    assert iterations == 3 and residuals[-1] < 1e-12


def test_cg_tolerance_is_relative_to_the_right_hand_side(x64):
    """``tol`` is relative to ``||b||``: scaling ``b`` by 1e-6 or 1e6 scales the solution and
    leaves the iterations (7 of 10) and the residual history unchanged."""
    A = jnp.asarray(np.diag(np.arange(1.0, 11.0)))
    b = jnp.asarray(np.random.default_rng(6).normal(size=10))

    def solve(scale):
        return conjugate_gradient(lambda u: A @ u, scale * b, max_steps=10, tol=1e-2)

    x, residuals, iterations = solve(1.0)
    assert 1 < iterations < 10 and residuals[iterations - 1] <= 1e-2
    for scale in (1e-6, 1e6):
        x_scaled, residuals_scaled, iterations_scaled = solve(scale)
        assert iterations_scaled == iterations, scale
        np.testing.assert_allclose(x_scaled, scale * x, rtol=1e-9)
        np.testing.assert_allclose(residuals_scaled, residuals, rtol=1e-9)


def test_hessian_and_stationarity_use_the_last_steps_loss(x64):
    """A ``takes_step`` support loss scaled by 3 at step 0 only: the inner loop still
    converges to the proximal solution of the unscaled loss, and the implicit gradient
    and stationarity check use the loss of the last step (Hessian ``A_s``, not ``3 A_s``)."""
    rng = np.random.default_rng(0)
    task = quad.make_task(rng)
    z0, lam = rng.normal(size=quad.DIM), 0.5

    def loss(params, batch, step):
        return jnp.where(step == 0, 3.0, 1.0) * quad.loss(params, batch)

    learner = converged_imaml(loss, lam=lam, takes_step=True)
    grads, aux = meta_grad(learner, learner.init(quad.unflatten(jnp.asarray(z0))), task)
    _, _, expected = quadratic_oracle(z0, task, lam)
    np.testing.assert_allclose(quad.flatten(grads.params), expected, rtol=1e-6, atol=1e-9)
    assert aux.solver.inner_grad_norm < 1e-10 and aux.solver.cg_residual < 1e-10


def conv4_problem():
    """Conv-4 with 4 filters on three 16x16 images in float64, as ``loss(strategy)``:
    one parameter tree serves both convolution strategies."""
    x = jax.random.normal(jax.random.key(0), (3, 16, 16, 1), jnp.float64)
    batch = {"x": x, "y": jnp.array([0, 1, 2])}

    def model(strategy):
        return metax.nn.Conv4(num_classes=3, features=4, conv_strategy=strategy)

    variables = jax.jit(model("patches_autodiff").init)(jax.random.key(1), x)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), variables["params"])

    def loss(strategy):
        def loss_fn(p, batch):
            logits = model(strategy).apply({"params": p}, batch["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

        return loss_fn

    return loss, params, batch


def random_like(tree, key):
    keys = jax.random.split(key, len(jax.tree.leaves(tree)))
    keys = jax.tree.unflatten(jax.tree.structure(tree), list(keys))
    return jax.tree.map(lambda a, k: jax.random.normal(k, a.shape, a.dtype), tree, keys)


def test_hvp_goes_through_custom_vjp_convolutions(x64):
    """``metax.nn``'s ``patches`` convolutions are ``jax.custom_vjp``: forward-over-reverse
    fails on them; reverse-over-reverse (the default) matches a central finite
    difference of gradients, and forward-over-reverse on the same network built from
    autodiff-only convolutions."""
    loss, params, batch = conv4_problem()
    f = lambda p: loss("patches")(p, batch)  # noqa: E731
    u = random_like(params, jax.random.key(2))

    @jax.jit
    def gradient_and_product(p, u):
        grad, hvp = gradient_and_hvp(f, p)  # reverse mode, the default
        return grad, hvp(u)

    grad, hu = gradient_and_product(params, u)
    hu = flat(hu)
    grad_at = jax.jit(jax.grad(f))
    np.testing.assert_allclose(flat(grad), flat(grad_at(params)), rtol=1e-12)
    eps = 1e-5
    plus = grad_at(jax.tree.map(lambda p, d: p + eps * d, params, u))
    minus = grad_at(jax.tree.map(lambda p, d: p - eps * d, params, u))
    finite_difference = (flat(plus) - flat(minus)) / (2 * eps)
    np.testing.assert_allclose(hu, finite_difference, rtol=1e-5, atol=1e-7 * np.abs(hu).max())

    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jit(lambda p, u: gradient_and_hvp(f, p, mode="forward")[1](u))(params, u)
    f_ad = lambda p: loss("patches_autodiff")(p, batch)  # noqa: E731
    forward = jax.jit(lambda p, u: gradient_and_hvp(f_ad, p, mode="forward")[1](u))
    np.testing.assert_allclose(
        hu, flat(forward(params, u)), rtol=1e-8, atol=1e-10 * np.abs(hu).max()
    )


def test_imaml_through_conv4_patches_convolutions(x64):
    """End to end on the custom-VJP network (reverse-mode products, the default). Its
    support-loss Hessian has eigenvalues down to about -24 (batch norm over three
    images), so ``lam=50`` keeps ``I + H / lam`` positive definite and CG converges."""
    loss, params, batch = conv4_problem()
    task = metax.Task(support=batch, query={"x": batch["x"][::-1], "y": batch["y"]})
    learner = metax.imaml(
        loss("patches"), inner_opt=optax.sgd(0.01), num_steps=3, lam=50.0, cg_steps=20, cg_tol=1e-8
    )
    grads, aux = jax.jit(lambda mp: meta_grad(learner, mp, task))(learner.init(params))
    g = flat(grads.params)
    assert np.isfinite(g).all() and np.abs(g).max() > 1e-3
    assert aux.solver.cg_residual < 1e-7 and aux.solver.cg_iterations < 20


IMAML = dict(inner_opt=optax.sgd(0.05), num_steps=5, lam=1.0, cg_steps=5)


def test_indefinite_system_is_reported_not_hidden(x64):
    """With ``lam`` below minus the smallest Hessian eigenvalue (about -0.7 here),
    ``I + H / lam`` is indefinite for some tasks: their CG stops at negative curvature
    within a few iterations with a large residual, while the others converge."""
    mp = metax.MetaParams(params=init_mlp(jax.random.key(0)))
    tasks = sample_tasks(jax.random.key(1), 4)
    solver = {}
    for lam in (5.0, 0.3):
        learner = metax.imaml(
            mlp_loss, inner_opt=optax.sgd(0.05), num_steps=5, lam=lam, cg_steps=30, cg_tol=1e-8
        )
        _, aux = jax.jit(jax.vmap(lambda t, learner=learner: meta_grad(learner, mp, t)))(tasks)
        solver[lam] = aux.solver
    assert np.all(solver[5.0].cg_residual < 1e-7)
    # Measured at lam=0.3: residuals 0.96, 0.34, 3e-9, 7e-6 after 4, 4, 23, 30 iterations.
    stopped = np.asarray(solver[0.3].cg_residual) > 0.1
    assert 1 <= stopped.sum() < 4
    assert np.all(np.asarray(solver[0.3].cg_iterations)[stopped] < 10)
    assert np.isfinite(np.asarray(solver[0.3].cg_residuals)).all()


def test_vmap_over_tasks_and_chunks_equal_a_python_loop(x64):
    """Each task's CG stops on its own tolerance under vmap (6 or 7 iterations here).
    Float64 and a well-conditioned system (lam=5): CG amplifies the rounding
    differences of batched and unbatched products by the condition number."""
    learner = metax.imaml(mlp_loss, **(IMAML | {"lam": 5.0, "cg_steps": 10, "cg_tol": 1e-6}))
    mp = learner.init(init_mlp(jax.random.key(0)))
    tasks = sample_tasks(jax.random.key(1), 4)
    outer = optax.sgd(1.0)
    results = {
        chunk: metax.meta_step(learner, outer, chunk_size=chunk)(mp, outer.init(mp), tasks)
        for chunk in (None, 2)
    }
    one_task = jax.jit(lambda task: meta_grad(learner, mp, task))
    per_task = [one_task(jax.tree.map(lambda x, i=i: x[i], tasks)) for i in range(4)]
    loop_mean = jax.tree.map(lambda *g: sum(g) / 4, *(g for g, _ in per_task))
    loop_solver = jax.tree.map(lambda *a: jnp.stack(a), *(aux.solver for _, aux in per_task))
    for new_mp, _, info in results.values():
        chex.assert_trees_all_close(
            jax.tree.map(jnp.subtract, mp, new_mp), loop_mean, rtol=1e-10, atol=1e-12
        )
        np.testing.assert_array_equal(info.aux.solver.cg_iterations, loop_solver.cg_iterations)
        np.testing.assert_allclose(
            info.aux.solver.cg_residuals, loop_solver.cg_residuals, rtol=1e-8, atol=1e-14
        )
        np.testing.assert_allclose(
            info.loss, np.mean([aux.query_loss for _, aux in per_task]), rtol=1e-12
        )
    assert len(set(np.asarray(loop_solver.cg_iterations).tolist())) > 1  # tasks stop apart


def test_jitted_meta_step_traces_once():
    learner = metax.imaml(mlp_loss, **IMAML)
    outer = optax.adam(1e-3)
    step = metax.meta_step(learner, outer)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train_step(mp, opt_state, key):
        return step(mp, opt_state, sample_tasks(key, 4))

    mp = learner.init(init_mlp(jax.random.key(0)))
    opt_state = outer.init(mp)
    for i in range(4):
        mp, opt_state, info = train_step(mp, opt_state, jax.random.key(i))
        assert np.isfinite(info.loss)
        assert info.aux.solver.cg_residual.shape == (4,)


def compiled_bytes(learner, mp, tasks):
    """Temporaries + outputs XLA assigns to one jitted meta-gradient (deterministic)."""
    grad = jax.jit(jax.grad(lambda m: jnp.mean(jax.vmap(lambda t: learner.loss(m, t)[0])(tasks))))
    memory = grad.lower(mp).compile().memory_analysis()
    return memory.temp_size_in_bytes + memory.output_size_in_bytes


def test_meta_gradient_memory_does_not_grow_with_inner_steps():
    """No tape for the inner loop: 10x the steps, same memory; second-order MAML, the
    control, grows (see benchmarks/imaml_memory.py for a larger model)."""
    mp = metax.MetaParams(params=init_mlp(jax.random.key(0), hidden=64))
    tasks = sample_tasks(jax.random.key(1), 4, shots=64)
    sgd = optax.sgd(0.05)
    imaml_bytes = [
        compiled_bytes(
            metax.imaml(mlp_loss, inner_opt=sgd, num_steps=k, lam=1.0, cg_steps=5), mp, tasks
        )
        for k in (5, 50)
    ]
    maml_bytes = [
        compiled_bytes(metax.maml(mlp_loss, inner_opt=sgd, num_steps=k), mp, tasks) for k in (5, 50)
    ]
    assert imaml_bytes[1] <= 1.2 * imaml_bytes[0], imaml_bytes
    assert maml_bytes[1] > 3 * maml_bytes[0], maml_bytes


def centred_regression(params, state, batch, step):
    """Training mode: centre the inputs with the batch mean and store it in the state
    (batch norm with momentum 0, one feature vector)."""
    del step
    mean = jnp.mean(batch["x"], 0)
    pred = (batch["x"] - mean) @ params["w"] + params["b"]
    return 0.5 * jnp.mean((pred - batch["y"]) ** 2), jax.lax.stop_gradient(mean)


def centred_regression_eval(params, state, batch, step):
    """Evaluation mode: centre with the stored (support) mean; the state is unchanged."""
    del step
    pred = (batch["x"] - state) @ params["w"] + params["b"]
    return 0.5 * jnp.mean((pred - batch["y"]) ** 2), state


def test_stateful_model_matches_closed_form(x64):
    """The support's statistic goes into the state and normalises the query; the
    meta-gradient is the closed form of the quadratic this model is."""
    rng = np.random.default_rng(3)
    d, n, lam = 3, 12, 0.7
    xs, xq = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 2.0
    w_true = rng.normal(size=d)
    task = metax.Task(
        support={"x": xs, "y": xs @ w_true + 0.3}, query={"x": xq, "y": xq @ w_true - 0.2}
    )
    theta = {"w": rng.normal(size=d), "b": np.float64(0.1)}
    learner = metax.imaml(
        centred_regression,
        inner_opt=optax.sgd(0.2),
        num_steps=400,
        lam=lam,
        cg_steps=d + 1,
        cg_tol=0.0,
        stateful=True,
        takes_step=True,
        query_loss_fn=centred_regression_eval,
    )
    mp = learner.init(jax.tree.map(jnp.asarray, theta))
    grads, aux = meta_grad(learner, mp, task, state=jnp.zeros(d))

    mu = xs.mean(0)  # the query's own mean is ~2 away: normalising with it would fail
    design = lambda x: np.hstack([x - mu, np.ones((n, 1))])  # noqa: E731
    Xs, Xq = design(xs), design(xq)
    A_s = Xs.T @ Xs / n
    eye, z0 = np.eye(d + 1), np.append(theta["w"], theta["b"])
    phi = np.linalg.solve(A_s + lam * eye, Xs.T @ task.support["y"] / n + lam * z0)
    query_grad = Xq.T @ (Xq @ phi - task.query["y"]) / n
    expected = np.linalg.solve(eye + A_s / lam, query_grad)

    np.testing.assert_allclose(aux.adapt.state, mu, rtol=1e-12)
    np.testing.assert_allclose(np.append(grads.params["w"], grads.params["b"]), expected, rtol=1e-6)
    assert aux.solver.cg_residual < 1e-10 and aux.solver.inner_grad_norm < 1e-10
    # A stateful loss without an initial state is a clear error.
    with pytest.raises(ValueError, match="needs the initial model state"):
        learner.loss(mp, task)


def test_adapt_is_the_proximal_inner_solve(x64):
    rng = np.random.default_rng(4)
    task = quad.make_task(rng)
    z0, lam = rng.normal(size=quad.DIM), 2.0
    learner = metax.imaml(quad.loss, inner_opt=optax.sgd(0.2), num_steps=2, lam=lam, cg_steps=3)
    mp = learner.init(quad.unflatten(jnp.asarray(z0)))
    phi_star, _, _ = quadratic_oracle(z0, task, lam)
    # The trained number of steps (2) by default, a longer solve when asked.
    short, info = learner.adapt(mp, task.support)
    assert info.support_loss.shape == (2,) and info.state is None
    A_s, c_s = np.asarray(task.support["A"]), np.asarray(task.support["c"])
    z = z0.copy()
    for _ in range(2):
        z = z - 0.2 * (A_s @ (z - c_s) + lam * (z - z0))
    np.testing.assert_allclose(quad.flatten(short), z, rtol=1e-12)
    long, info = learner.adapt(
        mp,
        task.support,
        num_steps=300,
        step_weights=None,
        eval_fn=lambda p: quad.loss(p, task.query),
    )
    np.testing.assert_allclose(quad.flatten(long), phi_star, rtol=1e-10)
    np.testing.assert_allclose(info.query_loss[-1], quad.loss(long, task.query), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"lam": 0.0}, ValueError, r"lam must be finite and > 0, got 0\.0"),
        ({"lam": -1.0}, ValueError, r"lam must be finite and > 0, got -1\.0"),
        ({"lam": float("inf")}, ValueError, r"lam must be finite and > 0, got inf"),
        ({"lam": "1"}, TypeError, r"lam must be a real number, got '1'"),
        ({"lam": jnp.float32(1.0)}, TypeError, r"lam must be a real number"),
        ({"cg_steps": 0}, ValueError, r"cg_steps must be >= 1, got 0"),
        ({"cg_steps": 5.0}, TypeError, r"cg_steps must be a Python int, got 5\.0"),
        ({"num_steps": 2.5}, TypeError, r"num_steps must be a Python int, got 2\.5"),
        ({"num_steps": 0}, ValueError, r"num_steps must be >= 1, got 0"),
        ({"cg_tol": -1e-3}, ValueError, r"cg_tol must be finite and >= 0, got -0\.001"),
        ({"hvp": "fwd"}, ValueError, r"hvp must be one of .* got 'fwd'"),
        ({"cg_damping": -1.0}, ValueError, r"cg_damping must be finite and >= 0, got -1\.0"),
        ({"lam_damping": "10"}, TypeError, r"lam_damping must be a real number, got '10'"),
    ],
)
def test_bad_settings_are_rejected_when_the_learner_is_built(kwargs, error, match):
    settings = dict(inner_opt=optax.sgd(0.1), num_steps=3, lam=1.0, cg_steps=5) | kwargs
    with pytest.raises(error, match=match):
        metax.imaml(quad.loss, **settings)


def test_only_the_initial_parameters_are_differentiated():
    """The documented contract: the meta-loss is a custom VJP, so forward mode (which
    would miss the implicit term) raises, and the task data are constants."""
    learner = metax.imaml(mlp_loss, **IMAML)
    params, task = mlp_setup(np.random.default_rng(0))
    params, task = jax.tree.map(lambda a: a.astype(jnp.float32), (params, task))
    mp = learner.init(params)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda m: learner.loss(m, task)[0], (mp,), (mp,))
    task_grad = jax.grad(lambda t: learner.loss(mp, t)[0])(task)
    assert all(not np.any(g) for g in jax.tree.leaves(task_grad))


@pytest.mark.learning
def test_imaml_learns_a_sinusoid_family_in_a_few_hundred_steps():
    """Meta-training beats the same untrained network fine-tuned the same way."""
    start = time.perf_counter()
    learner = metax.imaml(mlp_loss, inner_opt=optax.sgd(0.05), num_steps=10, lam=1.0, cg_steps=5)
    outer = optax.adam(3e-3)
    step = jax.jit(metax.meta_step(learner, outer))
    mp0 = learner.init(init_mlp(jax.random.key(0)))
    mp, opt_state = mp0, outer.init(mp0)
    for i in range(300):
        mp, opt_state, info = step(mp, opt_state, sample_tasks(jax.random.key(i), 8))

    @jax.jit
    def fine_tuned_query_loss(meta_params, tasks):
        def one(task):
            adapted, _ = learner.adapt(meta_params, task.support)
            return mlp_loss(adapted, task.query)

        return jnp.mean(jax.vmap(one)(tasks))

    test_tasks = sample_tasks(jax.random.key(10_000), 100)
    before = float(fine_tuned_query_loss(mp0, test_tasks))
    after = float(fine_tuned_query_loss(mp, test_tasks))
    assert after < 0.5 * before, (before, after)  # measured: 0.46 -> 0.13
    assert float(jnp.max(info.aux.solver.cg_residual)) < 0.1  # measured: 8e-3
    assert time.perf_counter() - start < 30
