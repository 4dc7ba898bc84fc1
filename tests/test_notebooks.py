"""The notebooks run end to end (with small settings)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["01_sinusoid.ipynb"])
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("METAX_NB_STEPS", "400")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "400 meta-steps in" in text
    assert "after 1 step" in text and "pretrained" in text
    assert os.environ["METAX_NB_STEPS"] == "400"
