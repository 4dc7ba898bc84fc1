"""Every training option is wired: each test fails if its option is silently dropped or inverted."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metax
from metax.data import EpisodeSpec, load_omniglot, make_split, sample_episode
from metax.train import Checkpointer, NonFiniteLossError, OmniglotConfig, SinusoidConfig, train
from metax.train.loop import TrainState, fit
from metax.train.metrics import MetricsLog
from metax.train.run import build, initial_state, load, step_selector, task_keys

NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"
needs_omniglot = pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}")
SIN = SinusoidConfig(meta_batch=4, hidden=(8, 8), inner_steps=2, steps_per_epoch=2)


def one_step(config, state_step=0, **family_options):
    """The run's real jitted step from its step-0 state, with the step counter at ``state_step``."""
    run = build(config, **family_options)
    state = initial_state(run)._replace(step=jnp.int32(state_step))
    return run, state, step_selector(run)(state_step)(state)[0]


def test_multi_step_loss_weights_reach_the_learner():
    """MAML++'s weights depend on the epoch; two epoch lengths give two meta-gradients at
    the same step. MAML has no multi-step loss: the weights (passed to every learner)
    cannot matter there, and it refuses an annealing setting rather than ignore it."""
    for algo, differ in (("maml++", True), ("maml", False)):
        fast, slow = (dataclasses.replace(SIN, algo=algo, steps_per_epoch=e) for e in (1, 1000))
        _, _, a = one_step(fast, state_step=2)
        _, _, b = one_step(slow, state_step=2)
        same = jax.tree.map(np.array_equal, a.meta_params.params, b.meta_params.params)
        assert all(jax.tree.leaves(same)) != differ, algo
    with pytest.raises(ValueError, match="--algo maml does not use msl_anneal_epochs=1"):
        build(dataclasses.replace(SIN, algo="maml", msl_anneal_epochs=1))


def test_derivative_order_annealing_is_first_order_then_exact():
    """first_order_epochs=1 with 2 steps per epoch: steps 0-1 take the first-order
    meta-gradient, step 2 on the exact one (checked against both learners on the same batch)."""
    config = dataclasses.replace(SIN, algo="maml", first_order_epochs=1)
    run = build(config)
    state = initial_state(run)
    tasks = jax.vmap(run.family.sample_task)(task_keys(config, 0))

    def reference(first_order):  # built here, not taken from the run
        spec = run.family.model_spec()
        learner = metax.maml(
            spec.loss_fn, inner_opt=optax.sgd(config.inner_lr), num_steps=2, first_order=first_order
        )
        step = metax.meta_step(learner, run.outer_opt)
        return step(state.meta_params, state.opt_state, tasks)[0]

    first, exact = reference(True), reference(False)
    assert not jax.tree.all(jax.tree.map(np.allclose, first, exact))  # the two really differ
    step_for = step_selector(run)
    chex.assert_trees_all_close(step_for(0)(state)[0].meta_params, first, rtol=1e-6)
    chex.assert_trees_all_close(step_for(1)(state)[0].meta_params, first, rtol=1e-6)
    chex.assert_trees_all_close(step_for(2)(state)[0].meta_params, exact, rtol=1e-6)


def test_rotation_is_drawn_per_class_not_per_image():
    """Every class is one asymmetric pattern (all drawers alike): each image of an
    episode is one rotation of one pattern; all of a class share it, classes differ."""
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 255, (12, 5, 5), dtype=np.uint8)
    pool = jnp.asarray(np.repeat(patterns[:, None], 6, axis=1))
    rotations = {(c, k): np.rot90(patterns[c], k) for c in range(12) for k in range(4)}
    seen = set()
    for seed in range(10):
        task = sample_episode(jax.random.key(seed), pool, EpisodeSpec(4, 2, 3, rotate=True))
        for part in (task.support, task.query):
            images = np.round(np.asarray(part["x"])[..., 0] * 255).astype(np.uint8)
            for image, label in zip(images, np.asarray(part["y"]), strict=True):
                (match,) = [ck for ck, r in rotations.items() if np.array_equal(r, image)]
                seen.add((seed, int(label), match))
    by_class = {}
    for seed, label, (c, k) in seen:
        by_class.setdefault((seed, label), set()).add((c, k))
    assert all(len(v) == 1 for v in by_class.values()), by_class  # one rotation per class
    assert len({k for (_, _, (_, k)) in seen}) == 4  # and all four occur across classes


def test_chunked_meta_step_equals_unchunked_under_plain_sgd():
    """SGD is not scale-invariant (Adam is): a chunking bug that scales the gradient shows."""
    from tests.test_meta_step import LEARNERS, init_mlp, sample_tasks

    learner, outer = LEARNERS["maml"](), optax.sgd(0.5)
    mp = learner.init(init_mlp(jax.random.key(4)))
    tasks = sample_tasks(jax.random.key(5), 6)
    full = metax.meta_step(learner, outer)(mp, outer.init(mp), tasks)[0]
    for chunk_size in (1, 2, 3):
        chunked = metax.meta_step(learner, outer, chunk_size=chunk_size)(mp, outer.init(mp), tasks)[
            0
        ]
        chex.assert_trees_all_close(chunked, full, rtol=1e-5, atol=1e-6)


def test_a_nan_loss_after_a_good_checkpoint_stops_the_run_and_keeps_it(tmp_path):
    """The loop checks the loss at each log: NaN at step 7 ends the run with a message
    naming the step and the last good checkpoint (6), which restores."""

    def step_for(i):
        def step(state):
            loss = jnp.float32(math.nan if i >= 6 else 1.0 / (i + 1))
            return state._replace(step=state.step + 1), metax.StepInfo(loss=loss, aux=None)

        return step

    state = TrainState(metax.MetaParams(jnp.ones(3)), (), jnp.int32(0))
    config = SIN.__class__(steps=10, log_every=1, checkpoint_every=3, eval_every=0)
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    metrics = MetricsLog(tmp_path / "metrics.jsonl")
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at step 7; the last good checkpoint \(step 6\)"
    ):
        fit(state, step_for, config, checkpointer=checkpointer, metrics=metrics, progress=False)
    assert checkpointer.latest_step() == 6
    assert int(checkpointer.restore(state).step) == 6
    assert [r["step"] for r in metrics.read()] == [1, 2, 3, 4, 5, 6]


def test_a_crash_while_validating_keeps_that_steps_checkpoint(tmp_path):
    """The checkpoint of a step is written before its validation runs."""

    def step_for(i):
        del i
        return lambda state: (
            state._replace(step=state.step + 1),
            metax.StepInfo(jnp.ones(()), None),
        )

    def validate(state):
        raise RuntimeError(f"validation crashed at step {int(state.step)}")

    state = TrainState(metax.MetaParams(jnp.ones(3)), (), jnp.int32(0))
    config = SIN.__class__(steps=10, log_every=1, checkpoint_every=4, eval_every=4)
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    metrics = MetricsLog(tmp_path / "metrics.jsonl")
    with pytest.raises(RuntimeError, match="validation crashed at step 4"):
        fit(state, step_for, config, checkpointer=checkpointer, metrics=metrics,
            validate=validate, progress=False)  # fmt: skip
    assert checkpointer.latest_step() == 4


TINY = dataclasses.replace(
    SIN, steps=4, log_every=1, eval_every=2, checkpoint_every=2, val_tasks=5, test_tasks=5
)


def test_validation_compiles_its_fine_tuning_once():
    """Each validation reuses one compiled program: the learner's fine-tuning is traced once."""
    run = build(TINY)
    state = initial_state(run)
    traced = []

    def adapt(*args, **kwargs):
        traced.append(1)
        return run.learner.adapt(*args, **kwargs)

    learner = run.learner._replace(adapt=adapt)
    values = [run.family.validate(learner, state.meta_params, None) for _ in range(3)]
    assert len(traced) == 1 and values[0] == values[2]


def test_results_are_written_before_the_figures(tmp_path, monkeypatch):
    """A failing plot loses no finished test: results.json is on disk first."""
    from metax.train.sinusoid import Sinusoid

    def broken_plot(*args):
        raise OSError("disk full")

    monkeypatch.setattr(Sinusoid, "plot", broken_plot)
    with pytest.raises(OSError, match="disk full"):
        train(TINY, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps_trained"] == 4


def test_resume_refuses_steps_it_cannot_honour_and_redoes_an_uncheckpointed_log(tmp_path):
    """A cosine-decayed run keeps its length; no run resumes below the step it reached; a run
    killed before its first checkpoint logs each step once when resumed."""
    cosine = dataclasses.replace(TINY, outer_decay="cosine")
    train(cosine, tmp_path / "cosine", progress=False)
    with pytest.raises(ValueError, match=r"steps=8 \(run: 4\): the outer rate is cosine-decayed"):
        train(dataclasses.replace(cosine, steps=8), tmp_path / "cosine", resume=True)
    assert json.loads((tmp_path / "cosine" / "config.json").read_text())["steps"] == 4

    run = tmp_path / "constant"
    train(TINY, run, progress=False)
    with pytest.raises(ValueError, match="steps=2: the run reached step 4"):
        train(dataclasses.replace(TINY, steps=2), run, resume=True)
    shutil.rmtree(run / "checkpoints")  # as if killed before its first checkpoint
    train(TINY, run, resume=True, progress=False)
    logged = [(r["step"], "loss" in r) for r in MetricsLog(run / "metrics.jsonl").read()]
    assert len(logged) == len(set(logged)) == 4 + 2  # 4 losses, 2 validations, once each
    assert int(load(run)[1].step) == 4
    with pytest.raises(ValueError, match="sinusoid runs read no data"):
        load(run, data=Path("omniglot.npz"))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"algo": "reptile", "first_order_epochs": 2}, "reptile does not use first_order_epochs=2"),
        ({"algo": "fomaml", "first_order_epochs": 1}, "fomaml does not use first_order_epochs=1"),
        ({"algo": "maml", "lam": 1.0}, "maml does not use lam=1.0"),
        ({"algo": "meta-sgd", "hyper_lr": 0.1}, "meta-sgd does not use hyper_lr=0.1"),
        ({"algo": "maml", "context_size": 10}, "maml does not use context_size=10"),
    ],
)
def test_a_setting_the_algorithm_never_reads_is_refused_not_ignored(changes, message):
    with pytest.raises(ValueError, match=message):
        build(dataclasses.replace(SIN, **changes))


def test_imaml_refuses_to_freeze_batch_norm_in_its_inner_loop():
    config = OmniglotConfig(data="unused.npz", algo="imaml", inner_bn="freeze", features=8)
    with pytest.raises(ValueError, match="imaml does not use inner_bn='freeze'"):
        build(config)


def test_a_family_config_is_checked_by_its_field_types_however_they_are_written():
    """A family module without ``from __future__ import annotations`` (real types, not
    strings) gets the same checks: a float is a rate, not a count."""
    from metax.train.config import RunConfig

    fields = [("dropout", float, 0.1), ("widths", tuple[int, ...], (4,)), ("name", str, "x")]
    Config = dataclasses.make_dataclass("Config", fields, bases=(RunConfig,), frozen=True)
    assert Config().dropout == 0.1 and Config(widths=[4, 8]).widths == (4, 8)  # JSON's lists
    for bad, message in [
        ({"dropout": -1.0}, "dropout must be a positive finite number, got -1.0"),
        ({"widths": 4}, "widths must be a non-empty list of positive widths, got 4"),
        ({"name": ""}, "name must be a non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            Config(**bad)


def test_a_taken_run_directory_is_reported_before_the_data_are_read(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    config = OmniglotConfig(data=str(tmp_path / "missing.npz"), features=8)
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        train(config, tmp_path / "run")
    with pytest.raises(
        FileNotFoundError, match=r"missing\.npz"
    ):  # the data, once the folder is free
        train(config, tmp_path / "new")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def data():
    return load_omniglot(NPZ)


@needs_omniglot
@pytest.mark.parametrize("split", ["maml", "alphabet"])
def test_no_test_character_or_alphabet_reaches_the_training_pool(data, split):
    parts = make_split(split, data)
    run = build(OmniglotConfig(data=str(NPZ), split=split), data=data)
    pools = run.family.pools
    for name in ("train", "val", "test"):  # the pools are the split's characters
        images, alphabet = pools[name]
        np.testing.assert_array_equal(images, data.images[getattr(parts, name)])
        np.testing.assert_array_equal(alphabet, data.alphabet[getattr(parts, name)])
    assert not set(parts.train) & set(parts.test) and not set(parts.val) & set(parts.test)
    if split == "alphabet":  # whole alphabets apart: Lake's 20 evaluation alphabets test
        train_alphabets = set(data.alphabet[parts.train]) | set(data.alphabet[parts.val])
        assert not train_alphabets & set(data.alphabet[parts.test])
        assert not data.is_background[parts.test].any()


@needs_omniglot
def test_maml_pp_scores_each_query_image_without_the_others_statistics(data):
    """per_step policy: a query set's loss is the mean of its images' own losses (no
    statistics are taken from the query), unlike the transductive batch policy."""
    config = OmniglotConfig(
        data=str(NPZ), algo="maml++", bn_policy="per_step", inner_steps=2, features=8
    )
    run = build(config, data=data)
    state = initial_state(run)
    task = sample_episode(jax.random.key(0), run.family.pools["train"][0], EpisodeSpec(5, 1, 2))

    def loss_of(indices, learner=run.learner, state=state):
        query = jax.tree.map(lambda x: x[jnp.asarray(indices)], task.query)
        return float(
            learner.loss(state.meta_params, task._replace(query=query), state=state.model_state)[
                1
            ].query_loss
        )

    pair = loss_of([0, 7])
    np.testing.assert_allclose(pair, (loss_of([0]) + loss_of([7])) / 2, rtol=1e-5)
    batch = build(dataclasses.replace(config, bn_policy="per_step_batch"), data=data)
    batch_state = initial_state(batch)
    transductive = [loss_of(i, batch.learner, batch_state) for i in ([0, 7], [0], [7])]
    assert abs(transductive[0] - (transductive[1] + transductive[2]) / 2) > 1e-3


@needs_omniglot
def test_omniglot_run_with_batch_norm_state_resumes_bit_for_bit(data, tmp_path):
    """Crash after logging steps 4-6 but before checkpoint 6: the resumed run ends where
    the uninterrupted one does (parameters and per-step statistics) and logs no step twice."""
    config = OmniglotConfig(
        data=str(NPZ), algo="maml++", bn_policy="per_step", inner_steps=2, features=8, meta_batch=2,
        steps=6, log_every=1, checkpoint_every=3, eval_every=0, test_tasks=4,
    )  # fmt: skip
    whole = tmp_path / "whole"
    train(config, whole, progress=False, data=data)
    crashed = tmp_path / "crashed"
    shutil.copytree(whole, crashed)
    shutil.rmtree(crashed / "checkpoints" / "6")
    (crashed / "results.json").unlink()
    train(config, crashed, resume=True, progress=False, data=data)
    _, want = load(whole, data=data)
    _, got = load(crashed, data=data)
    jax.tree.map(np.testing.assert_array_equal, want, got)
    assert got.model_state["StepBatchNorm_0"]["mean"].shape == (2, 8)
    steps = [
        json.loads(line)["step"] for line in (crashed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


@needs_omniglot
@pytest.mark.parametrize(
    "flags",
    [{"split": "alphabet", "distortion": "affine"}, {"backbone": "resnet12", "features": 4}],
)
def test_split_and_backbone_options_run_through_the_real_train_path(data, tmp_path, flags):
    config = OmniglotConfig(
        data=str(NPZ), meta_batch=2, steps=2, log_every=1, checkpoint_every=2, eval_every=0,
        test_tasks=4, features=8, **{k: v for k, v in flags.items() if k != "features"},
    )  # fmt: skip
    config = dataclasses.replace(config, **flags)
    res = train(config, tmp_path / "run", progress=False, data=data)
    run, state = load(tmp_path / "run", data=data)
    assert run.config == config and res["steps_trained"] == int(state.step) == 2
    if "backbone" in flags:  # ResNet-12's four residual blocks, not Conv-4's layers
        assert (
            "ResidualBlock_3" in state.meta_params.params
            and "Conv3x3_0" not in state.meta_params.params
        )
    else:
        test_images = run.family.pools["test"][0]
        assert test_images.shape[0] == int(
            (~data.is_background).sum()
        )  # Lake's 659 evaluation characters
