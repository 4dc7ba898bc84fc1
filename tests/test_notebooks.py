"""The notebooks run end to end (with small settings)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
NPZ = Path(__file__).parents[1].parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"


def execute(name: str) -> str:
    """Runs a notebook in a fresh kernel; returns its printed output."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def test_sinusoid_notebook_executes(monkeypatch):
    monkeypatch.setenv("METAX_NB_STEPS", "400")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = execute("01_sinusoid.ipynb")
    assert "400 meta-steps in" in text
    assert "after 1 step" in text and "pretrained" in text


@pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}")
def test_omniglot_notebook_executes(monkeypatch):
    for name, value in {
        "METAX_OMNIGLOT": str(NPZ),
        "METAX_NB_STEPS": "20",
        "METAX_NB_FEATURES": "8",
        "METAX_NB_META_BATCH": "4",
        "METAX_NB_INNER_STEPS": "2",
        "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(name, value)
    text = execute("02_omniglot.ipynb")
    assert "{'train': 1100, 'val': 100, 'test': 423}" in text
    assert "20 meta-steps in" in text and "MAML++: 10 meta-steps in" in text
    assert " 1 query per class: test accuracy" in text and "15 queries per class" in text
    assert "Conv3x3_3" in text  # the learned rates are printed per layer


def test_algorithms_notebook_trains_every_algorithm(monkeypatch):
    """Each of the nine algorithms, meta-trained 1,000 steps, beats its own untrained
    start (same 600 tasks, same fine-tuning) by a wide margin (measured: by 1.9-13x;
    iMAML, whose inner loop is the slowest to settle, by 1.5x)."""
    monkeypatch.setenv("METAX_NB_STEPS", "1000")
    text = execute("03_algorithms.ipynb")
    rows = re.findall(r"^  (\S+)\s+untrained (\d+\.\d+) .* trained (\d+\.\d+) ", text, re.M)
    assert [name for name, *_ in rows] == [
        "MAML", "FOMAML", "MAML++", "Meta-SGD", "ANIL", "BOIL", "CAVIA", "iMAML", "Alpha-MAML"
    ], text  # fmt: skip
    for name, untrained, trained in rows:
        margin = 0.8 if name == "iMAML" else 0.7
        assert float(trained) < margin * float(untrained), (name, untrained, trained)
