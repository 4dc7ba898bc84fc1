"""Sinusoid end to end: sampler, a short real training run, pretrain baseline, evaluation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metax
from metax.data import sample_sinusoid_tasks
from metax.train import MetricsLog, SinusoidConfig, evaluate, load, train
from metax.train.run import build, initial_state


def test_sampler_ranges_and_ground_truth():
    data = sample_sinusoid_tasks(jax.random.key(0), 500, shots=5, queries=3)
    assert data.tasks.support["x"].shape == (500, 5, 1)
    assert data.tasks.query["y"].shape == (500, 3, 1)
    assert 0.1 <= float(data.amplitude.min()) and float(data.amplitude.max()) <= 5.0
    assert 0.0 <= float(data.phase.min()) and float(data.phase.max()) <= np.pi
    x = data.tasks.support["x"]
    assert -5.0 <= float(x.min()) and float(x.max()) <= 5.0
    expected = data.amplitude[:, None, None] * jnp.sin(x - data.phase[:, None, None])
    np.testing.assert_allclose(data.tasks.support["y"], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="shots must be a positive int, got 0"):
        sample_sinusoid_tasks(jax.random.key(0), 2, shots=0)


SHORT = SinusoidConfig(
    steps=3000, meta_batch=25, eval_every=0, checkpoint_every=1000, log_every=500, test_tasks=200
)


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        algo: train(dataclasses.replace(SHORT, algo=algo), root / algo, progress=False)
        for algo in ("maml", "pretrain")
    }


@pytest.mark.learning
def test_sinusoid_maml_beats_the_same_model_untrained(short_runs):
    """3,000 meta-steps against step 0: same 200 test tasks, same fine-tuning (SGD at
    inner_lr). Measured: untrained 1-step MSE 8.04, trained 0.81."""
    res = short_runs["maml"]
    run = build(dataclasses.replace(SHORT, algo="maml"))
    untrained = evaluate(run, initial_state(run))
    assert untrained["test_tasks"] == res["test_tasks"] == 200
    assert res["mse"][1] < 0.5 * untrained["mse"][1], (res["mse"], untrained["mse"])
    assert res["mse"][10] < 0.5 * untrained["mse"][10], (res["mse"], untrained["mse"])
    assert res["mse"][10] < res["mse"][1]
    assert len(res["ci95"]) == 11 and all(c > 0 for c in res["ci95"])


@pytest.mark.learning
def test_sinusoid_maml_beats_the_pretrained_baseline_on_the_same_tasks(short_runs):
    maml, base = short_runs["maml"], short_runs["pretrain"]
    assert maml["test_tasks"] == base["test_tasks"] == 200
    # The baseline predicts ~0 and one step helps it little; MAML's gap is large.
    assert maml["mse"][1] + maml["ci95"][1] < base["mse"][1] - base["ci95"][1], (maml, base)


def test_run_directory_holds_results_and_plots(short_runs, tmp_path_factory):
    del short_runs
    run = next(tmp_path_factory.getbasetemp().glob("runs*/maml"))
    for name in ("config.json", "metrics.jsonl", "results.json", "loss_curve.png", "fits.png"):
        assert (run / name).is_file(), name
    loaded, state = load(run)
    assert loaded.config == dataclasses.replace(SHORT, algo="maml") and int(state.step) == 3000


def test_fine_tuning_past_the_trained_steps_reuses_the_last_learned_rates():
    """MetaLearner.adapt is the one fine-tuning path: 4 steps of a 2-step MAML++ learner
    take the rates [r0, r1, r1, r1]; a hand-written loop with those rates agrees."""
    loss = lambda w, b: jnp.mean((b["x"] * w - b["y"]) ** 2)  # noqa: E731
    learner = metax.maml_pp(loss, num_steps=2, init_lr=0.01)
    mp = learner.init(jnp.float32(0.0))._replace(hparams=jnp.array([0.01, 0.5]))
    batch = {"x": jnp.array([1.0, 2.0]), "y": jnp.array([2.0, 4.0])}
    adapted, _ = learner.adapt(mp, batch, num_steps=4)
    w = 0.0
    for rate in (0.01, 0.5, 0.5, 0.5):
        w = w - rate * jax.grad(loss)(w, batch)
    np.testing.assert_allclose(adapted, w, rtol=1e-6)
    shorter, _ = learner.adapt(mp, batch, num_steps=1)
    np.testing.assert_allclose(shorter, -0.01 * jax.grad(loss)(0.0, batch), rtol=1e-6)


def test_checkpointer_refuses_non_finite_state_and_keeps_the_good_one(tmp_path):
    from metax.train import Checkpointer, CheckpointError

    ckpt = Checkpointer(tmp_path / "ckpt")
    good = {"w": jnp.ones(3)}
    ckpt.save(10, good)
    with pytest.raises(
        CheckpointError, match=r"refusing to checkpoint step 20: \['w'\] is not finite"
    ):
        ckpt.save(20, {"w": jnp.array([1.0, jnp.nan, 0.0])})
    assert ckpt.latest_step() == 10
    np.testing.assert_array_equal(ckpt.restore(good)["w"], good["w"])


def test_checkpoint_steps_are_orbaxs_complete_ones_read_without_jax(tmp_path):
    """``complete_steps`` (what a resume checks before JAX starts) lists what Orbax's own
    manager lists: finished steps, not a save that died in its temporary folder."""
    import orbax.checkpoint as ocp

    from metax.train import Checkpointer
    from metax.train.checkpoint import complete_steps

    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    for step in (10, 20, 30):
        ckpt.save(step, {"w": jnp.full(3, step)})
    (tmp_path / "ckpt" / "40.orbax-checkpoint-tmp-1234").mkdir()  # a save killed midway
    orbax_steps = sorted(ocp.CheckpointManager(tmp_path / "ckpt").all_steps())
    assert complete_steps(tmp_path / "ckpt") == orbax_steps == [20, 30]
    assert ckpt.latest_step() == 30 and complete_steps(tmp_path / "none") == []


def test_imaml_runs_log_the_cg_residual_of_their_meta_gradients(tmp_path):
    """iMAML's training log reports its solver (mean and worst task per logged step), so a
    CG that did not converge shows: one CG step leaves a larger residual than five
    (measured: 0.204 against 0.046 at lam 10; at lam 2 the system is worse conditioned)."""
    config = dataclasses.replace(
        SHORT,
        algo="imaml",
        steps=20,
        log_every=10,
        checkpoint_every=20,
        test_tasks=20,
        inner_steps=10,
        lam=10.0,
    )
    logged = {}
    for cg_steps in (1, 5):
        out = tmp_path / f"cg{cg_steps}"
        train(dataclasses.replace(config, cg_steps=cg_steps), out, progress=False)
        records = [r for r in MetricsLog(out / "metrics.jsonl").read() if "loss" in r]
        assert [r["step"] for r in records] == [10, 20]
        logged[cg_steps] = records[-1]
    for name in ("cg_residual", "cg_iterations", "inner_grad_norm"):
        assert logged[1][f"{name}_max"] >= logged[1][name] >= 0.0, name
    assert logged[1]["cg_iterations"] == 1.0 and logged[5]["cg_iterations"] > 4.0
    assert logged[1]["cg_residual"] > 2 * logged[5]["cg_residual"], logged
