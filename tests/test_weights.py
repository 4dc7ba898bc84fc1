"""Published weights (``benchmarks/weights/<cell>``): restored without training data, and
scoring what ``results.json`` published, far above the same model untrained."""

import json
import shutil
from pathlib import Path

import pytest

from metax.train import evaluate, load
from metax.train.run import initial_state

WEIGHTS = Path(__file__).parents[1] / "benchmarks" / "weights"
NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"
CELLS = sorted(p.name for p in WEIGHTS.glob("*") if not p.name.startswith("lake"))


def _copy_without_data(cell: str, tmp_path: Path) -> Path:
    """The cell's run directory, its config pointing at data that do not exist."""
    model = shutil.copytree(WEIGHTS / cell, tmp_path / cell)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "absent")}))
    return model


@pytest.mark.parametrize("cell", CELLS)
def test_published_cell_restores_without_training_data(cell, tmp_path):
    published = json.loads((WEIGHTS / cell / "results.json").read_text())
    run, state = load(_copy_without_data(cell, tmp_path))
    assert int(state.step) == published["steps_trained"]
    assert run.config.ways == published["ways"] and run.config.shots == published["shots"]


@pytest.mark.skipif(not NPZ.is_file(), reason=f"Omniglot npz absent ({NPZ})")
@pytest.mark.parametrize("cell", CELLS)
def test_published_cell_scores_its_figure_against_the_same_model_untrained(cell, tmp_path):
    """50 test episodes: within 3 points of the published 600-episode figure, and at least
    20 points above the same model's step-0 initialisation on the same episodes."""
    published = json.loads((WEIGHTS / cell / "results.json").read_text())
    run, state = load(_copy_without_data(cell, tmp_path), data=str(NPZ), test_tasks=50)
    trained = evaluate(run, state)["test_accuracy"]
    untrained = evaluate(run, initial_state(run))["test_accuracy"]
    assert trained > published["test_accuracy"] - 0.03, (trained, published["test_accuracy"])
    assert trained > untrained + 0.2, (trained, untrained)


def test_eval_of_published_weights_without_their_data_names_the_path_and_the_flag(tmp_path, capsys):
    from metax.cli import main

    model = _copy_without_data(CELLS[0], tmp_path)
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(model), "--test-tasks", "10"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"no Omniglot data at {tmp_path / 'absent'}" in err and "Pass --data" in err, err
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before
