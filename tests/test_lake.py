"""`metax eval-lake`: Lake et al.'s 20-run protocol, on run folders built from the npz."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metax.data.lake import read_run
from metax.train.lake import evaluate_lake

NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"
pytestmark = pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}")


def write_runs(
    root: Path, num_runs: int = 20, ways: int = 20, *, test_drawer: int = 1
) -> dict[str, list[int]]:
    """Runs in Lake's layout from evaluation characters: drawer 0 trains, ``test_drawer`` tests.

    ``class_labels.txt`` lists the items in a shuffled order, so answers can only be read
    from the file names. Returns each run's true class (0-based ``classNN``) per item.
    """
    with np.load(NPZ) as f:
        images, background = f["images"], f["is_background"]
    evaluation = np.flatnonzero(~background)
    rng = np.random.default_rng(0)
    truth = {}
    for r in range(1, num_runs + 1):
        run = root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        chars = rng.choice(evaluation, ways, replace=False)
        order = rng.permutation(ways)
        for k, c in enumerate(chars):
            Image.fromarray(images[c, 0].astype(np.uint8) * 255).save(
                run / "training" / f"class{k + 1:02d}.png"
            )
        lines = []
        for i, k in enumerate(order):
            Image.fromarray(images[chars[k], test_drawer].astype(np.uint8) * 255).save(
                run / "test" / f"item{i + 1:02d}.png"
            )
            lines.append(
                f"run{r:02d}/test/item{i + 1:02d}.png run{r:02d}/training/class{k + 1:02d}.png"
            )
        rng.shuffle(lines)
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
        truth[run.name] = [int(k) for k in order]
    return truth


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    return root, write_runs(root, num_runs=3, test_drawer=0)


def test_answers_come_from_the_file_names_whatever_the_line_order(runs):
    """Each test item is its class's training image itself, lines shuffled: every
    answer must point at the training image equal to its item."""
    root, truth = runs
    train_x, test_x, answers = read_run(root / "run01")
    assert train_x.shape == (20, 28, 28) and test_x.shape == (20, 28, 28)
    np.testing.assert_array_equal(test_x, train_x[answers])
    assert sorted(answers.tolist()) == sorted(truth["run01"]) == list(range(20))
    first = (root / "run01" / "class_labels.txt").read_text().split()[0]
    assert first != "run01/test/item01.png"  # the file really is shuffled


def test_broken_run_folders(tmp_path, runs):
    runs, _ = runs
    with pytest.raises(FileNotFoundError, match=r"no run01\.\.run20 folders"):
        evaluate_lake(tmp_path, tmp_path)
    broken = tmp_path / "broken" / "run01"
    broken.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"class_labels\.txt is missing"):
        read_run(broken)
    import shutil

    shutil.copytree(runs / "run02", tmp_path / "bad" / "run02")
    (tmp_path / "bad" / "run02" / "class_labels.txt").write_text("run02/test/item01.png nonsense\n")
    with pytest.raises(ValueError, match=r"class_labels\.txt:1: expected"):
        read_run(tmp_path / "bad" / "run02")


def test_a_missing_or_extra_image_or_a_wrong_label_line_is_named(tmp_path, runs):
    import shutil

    root, _ = runs
    extra = tmp_path / "extra" / "run01"
    shutil.copytree(root / "run01", extra)
    shutil.copy(extra / "training" / "class01.png", extra / "training" / "class21.png")
    with pytest.raises(ValueError, match=r"training/class21\.png is named by no line"):
        read_run(extra)
    missing = tmp_path / "missing" / "run01"
    shutil.copytree(root / "run01", missing)
    (missing / "training" / "class07.png").unlink()
    with pytest.raises(ValueError, match=r"class07\.png is not among the training images"):
        read_run(missing)
    (missing / "training" / "class07.png").write_bytes(
        (root / "run01/training/class07.png").read_bytes()
    )
    (missing / "test" / "item03.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing test images: .*item03\.png"):
        read_run(missing)

    other = tmp_path / "other" / "run02"  # run01's answers under run02's name
    shutil.copytree(root / "run01", other)
    with pytest.raises(ValueError, match=r"run01/test/item\d+\.png is not in run02/test"):
        read_run(other)
    twice = tmp_path / "twice" / "run01"
    shutil.copytree(root / "run01", twice)
    labels = twice / "class_labels.txt"
    first = labels.read_text().splitlines()[0]
    labels.write_text(labels.read_text() + first + "\n")
    with pytest.raises(
        ValueError, match=r"class_labels\.txt:21: test/item\d+\.png is named a second"
    ):
        read_run(twice)
    unlabelled = tmp_path / "unlabelled" / "run01"
    shutil.copytree(root / "run01", unlabelled)
    shutil.copy(unlabelled / "test" / "item01.png", unlabelled / "test" / "item99.png")
    with pytest.raises(ValueError, match=r"test/item99\.png is named by no line"):
        read_run(unlabelled)


def test_runs_of_different_ways_are_refused(tmp_path, runs):
    from metax.data.lake import read_runs

    write_runs(tmp_path / "mixed", num_runs=1, ways=5)  # run01 is the odd one out
    write_runs(tmp_path / "twenty", num_runs=3, ways=20)
    for name in ("run02", "run03"):
        (tmp_path / "twenty" / name).rename(tmp_path / "mixed" / name)
    with pytest.raises(ValueError, match=r"have 20 training images, except \{'run01': 5\}"):
        read_runs(tmp_path / "mixed")


@pytest.mark.parametrize("policy", ["batch", "per_step"])
def test_per_image_scoring_ignores_the_other_test_images(runs, policy):
    """Batch statistics: per-image logits of an item do not change when the other items
    do (the transductive ones do), and differ from the transductive ones. Per-step
    policy (support statistics, no batch statistics at test): the two scorings agree."""
    import jax.numpy as jnp

    from metax.data.lake import read_runs
    from metax.train import OmniglotConfig
    from metax.train.run import build, initial_state

    root, _ = runs
    task = read_runs(root, size=28)["run01"]
    config = OmniglotConfig(
        data=str(NPZ), ways=20, features=8, bn_policy=policy, eval_inner_steps=2
    )
    run = build(config)
    state = initial_state(run)

    def logits(task, per_image):
        mp, ms = state.meta_params, state.model_state
        return run.family.episode_logits(run.learner, mp, ms, task, per_image=per_image)

    others_blank = task._replace(query={**task.query, "x": task.query["x"].at[1:].set(0.0)})
    alone, blank_alone = logits(task, True), logits(others_blank, True)
    together, blank_together = logits(task, False), logits(others_blank, False)
    np.testing.assert_allclose(alone[0], blank_alone[0], rtol=1e-5, atol=1e-5)
    if policy == "batch":
        assert float(jnp.max(jnp.abs(together[0] - blank_together[0]))) > 1e-2
        assert float(jnp.max(jnp.abs(alone - together))) > 1e-2
    else:
        np.testing.assert_allclose(alone, together, rtol=1e-6, atol=1e-6)


WEIGHTS = Path(__file__).parents[1] / "benchmarks" / "weights" / "lake-20w1s"


@pytest.mark.skipif(not (WEIGHTS / "lake.json").is_file(), reason="no published Lake model")
def test_published_lake_model_scores_its_published_error_without_training_data(tmp_path):
    """The committed model, restored from a copy whose config names no existing data,
    scores on run folders rebuilt by benchmarks/lake_runs.py exactly what lake.json says."""
    import json
    import shutil
    import sys

    sys.path.insert(0, str(WEIGHTS.parents[1]))
    from lake_runs import write_lake_runs

    published = json.loads((WEIGHTS / "lake.json").read_text())
    model = shutil.copytree(WEIGHTS, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "absent.npz")}))
    like = published.get("like_lake2015", False)
    write_lake_runs(NPZ, tmp_path / "runs", seed=published["runs_seed"], like_lake2015=like)
    result = evaluate_lake(tmp_path / "runs", model, per_image=True)
    for scoring in ("transductive", "per_image"):
        assert result[scoring]["runs"] == published[scoring]["runs"], scoring
