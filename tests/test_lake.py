"""`metax eval-lake`: Lake et al.'s 20-run protocol, on run folders built from the npz."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metax.data.lake import read_run
from metax.train import OmniglotConfig, train
from metax.train.lake import evaluate_lake

NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"
pytestmark = pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}")


def write_runs(root: Path, num_runs: int = 20, ways: int = 20) -> None:
    """Runs in Lake's layout from evaluation characters: drawer 0 trains, drawer 1 tests."""
    with np.load(NPZ) as f:
        images, background = f["images"], f["is_background"]
    evaluation = np.flatnonzero(~background)
    rng = np.random.default_rng(0)
    for r in range(1, num_runs + 1):
        run = root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        chars = rng.choice(evaluation, ways, replace=False)
        order = rng.permutation(ways)
        lines = []
        for k, c in enumerate(chars):
            Image.fromarray(images[c, 0].astype(np.uint8) * 255).save(
                run / "training" / f"class{k + 1:02d}.png"
            )
        for i, k in enumerate(order):
            Image.fromarray(images[chars[k], 1].astype(np.uint8) * 255).save(
                run / "test" / f"item{i + 1:02d}.png"
            )
            lines.append(
                f"run{r:02d}/test/item{i + 1:02d}.png run{r:02d}/training/class{k + 1:02d}.png"
            )
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    write_runs(root)
    return root


def test_read_run_parses_labels(runs):
    train_x, test_x, truth = read_run(runs / "run01")
    assert train_x.shape == (20, 28, 28) and test_x.shape == (20, 28, 28)
    assert sorted(truth) == list(range(20))


def test_a_20_way_model_beats_chance_on_lake_runs(runs, tmp_path):
    cfg = OmniglotConfig(
        data=str(NPZ),
        ways=20,
        shots=1,
        steps=150,
        meta_batch=4,
        features=16,
        log_every=50,
        eval_every=0,
        checkpoint_every=150,
        test_tasks=20,
        eval_inner_steps=5,
        inner_lr=0.4,
    )
    own = train(cfg, tmp_path / "model", progress=False)
    res = evaluate_lake(runs, tmp_path / "model")
    assert len(res["runs"]) == 20
    assert all(0.0 <= e <= 1.0 for e in res["runs"].values())
    # Chance is 95% error (+- 2% over 400 items); this short-trained model is far better,
    # and about as good as on its own 20-way test episodes.
    assert res["error_rate"] < 0.9, res
    assert abs(res["error_rate"] - (1 - own["test_accuracy"])) < 0.1, (res, own)

    cli = subprocess.run(
        [sys.executable, "-m", "metax.cli", "eval-lake", runs, "--checkpoint", tmp_path / "model"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"error rate {100 * res['error_rate']:.2f}%" in cli.stdout

    five_way = tmp_path / "five"
    five_way.mkdir()
    (five_way / "config.json").write_text(dataclasses.replace(cfg, ways=5).to_json())
    with pytest.raises(
        ValueError, match=r"the runs are 20-way 1-shot but the checkpoint was meta-trained 5-way"
    ):
        evaluate_lake(runs, tmp_path / "five")


def test_broken_run_folders(tmp_path, runs):
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
