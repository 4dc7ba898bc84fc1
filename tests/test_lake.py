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
