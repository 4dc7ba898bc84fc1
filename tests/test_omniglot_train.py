"""Omniglot meta-training on the real data: a short run learns, one compile, resume, bad input."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from metax.data import load_omniglot
from metax.train import OmniglotConfig, train
from metax.train.run import build, initial_state, step_selector

NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"
pytestmark = pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}")

SHORT = OmniglotConfig(
    data=str(NPZ),
    steps=300,
    meta_batch=8,
    features=16,
    log_every=50,
    eval_every=150,
    checkpoint_every=150,
    val_tasks=50,
    test_tasks=100,
    eval_inner_steps=5,
)


@pytest.fixture(scope="module")
def data():
    return load_omniglot(NPZ)


def test_short_maml_run_learns_5way_1shot(data, tmp_path):
    """300 meta-steps of a small Conv-4: far above chance (20%); a broken
    meta-gradient or a label/episode bug stays near chance."""
    res = train(SHORT, tmp_path / "run", progress=False, data=data)
    assert res["test_tasks"] == 100
    assert res["eval_queries"] == SHORT.queries == 1  # Finn et al.'s protocol: as in training
    assert res["test_accuracy"] > 0.55, res
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records if "val_accuracy" in r] == [150, 300]
    assert (tmp_path / "run" / "learning_curve.png").is_file()


def test_meta_step_including_sampling_compiles_once(data):
    cfg = dataclasses.replace(SHORT, algo="maml++", inner_steps=2)
    run = build(cfg, data=data)
    state = initial_state(run)
    step = step_selector(run)(0)
    traced = chex.assert_max_traces(n=1)(step.__wrapped__)
    jitted = jax.jit(traced)
    for _ in range(3):
        state, info = jitted(state)
    assert int(state.step) == 3 and np.isfinite(float(info.loss))
    # the per-step batch-norm state travels in the train state
    assert state.model_state["StepBatchNorm_0"]["mean"].shape == (2, 16)


@pytest.mark.parametrize("bn_policy", ["per_step", "per_step_batch"])
def test_checkpoint_round_trip_keeps_batch_norm_state_and_continues_identically(
    data, tmp_path, bn_policy
):
    from metax.train import Checkpointer
    from metax.train.loop import abstract_like

    cfg = dataclasses.replace(SHORT, algo="maml++", inner_steps=2, features=8, bn_policy=bn_policy)
    run = build(cfg, data=data)
    step = step_selector(run)(0)
    state = initial_state(run)
    for _ in range(3):
        state, _ = step(state)
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(3, state)
    restored = ckpt.restore(abstract_like(initial_state(run)))
    jax.tree.map(np.testing.assert_array_equal, state, restored)
    assert int(restored.step) == 3
    if bn_policy == "per_step_batch":  # no statistics to carry
        assert restored.model_state is None
    else:
        assert restored.model_state["StepBatchNorm_0"]["mean"].shape == (2, 8)
    # Each inner step trains its own BN weights: a model always told step 0 leaves row 1 at 1.
    scale = np.asarray(state.meta_params.params["StepBatchNorm_0"]["scale"])
    assert scale.shape == (2, 8) and not np.allclose(scale[1], 1.0)
    assert not np.allclose(scale[0], scale[1])
    for _ in range(2):
        state, _ = step(state)
        restored, _ = step(restored)
    jax.tree.map(np.testing.assert_array_equal, state, restored)


def test_inner_bn_freeze_keeps_batch_norm_weights_out_of_the_inner_loop(data):
    """MAML++ (learned rates; MAML's SGD goes through the same ``ModelSpec.restrict_inner``)."""
    import jax.numpy as jnp

    from metax.data import EpisodeSpec, sample_episode
    from metax.nn import batch_norm_mask

    def adapt(inner_bn):
        cfg = dataclasses.replace(
            SHORT, algo="maml++", inner_steps=2, features=8, inner_bn=inner_bn
        )
        run = build(cfg, data=data)
        state = initial_state(run)
        task = sample_episode(jax.random.key(0), run.family.pools["train"], EpisodeSpec(5, 1, 1))
        adapted, _ = run.learner.adapt(state.meta_params, task.support, state=state.model_state)
        return state.meta_params.params, adapted

    runs = {inner_bn: adapt(inner_bn) for inner_bn in ("adapt", "freeze")}
    mask = batch_norm_mask(build(SHORT).family.model, jnp.zeros((2, 28, 28, 1)))
    assert sum(jax.tree.leaves(mask)) == 8  # scale and bias of Conv-4's 4 batch norms
    for inner_bn, (before, after) in runs.items():
        moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)
        for is_bn, changed in zip(jax.tree.leaves(mask), jax.tree.leaves(moved), strict=True):
            assert changed == (inner_bn == "adapt" or not is_bn)


def metax(*args):
    return subprocess.run(
        [sys.executable, "-m", "metax.cli", *map(str, args)], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--ways", "200"], "ways=200 is more than the 100 classes of the val split"),
        (
            ["--shots", "10", "--eval-queries", "15"],
            "shots + queries = 10 + 15 = 25 is more than the 20 examples",
        ),
        (["--data", "/nonexistent/omniglot"], "no Omniglot data at /nonexistent/omniglot"),
        (["--algo", "magic"], "invalid choice: 'magic'"),
    ],
)
def test_bad_omniglot_input_fails_before_compiling(tmp_path, flags, message):
    result = metax(
        "train", "omniglot", "--data", NPZ, *flags, "--out", tmp_path / "run", "--steps", "5"
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()
