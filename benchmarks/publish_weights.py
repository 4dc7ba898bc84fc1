"""Copies a finished run's config, logs and final checkpoint to ``benchmarks/weights/<cell>/``.

The copy is a run directory with one checkpoint (meta-parameters, optimizer state, model
state, step), so ``metax eval``, ``metax eval-lake --checkpoint`` and ``metax train ...
--resume`` all take it; restoring it needs no training data. It refuses a copy over 2 MB.

Usage:
  python benchmarks/publish_weights.py runs/lake-20w1s lake-20w1s
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
FILES = (
    "config.json",
    "metrics.jsonl",
    "results.json",
    "learning_curve.png",
    "eval.json",
    "lake.json",
)
LIMIT = 2 * 2**20


def publish(run: Path, cell: str) -> Path:
    """Copies ``run``'s files and its latest checkpoint to ``weights/<cell>``; returns the folder."""
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {run / 'checkpoints'}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", cell) or ".." in cell:
        raise ValueError(f"cell {cell!r} must be one folder name, e.g. maml-5w1s")
    checkpoint = run / "checkpoints" / str(steps[-1])
    files = [run / name for name in FILES if (run / name).is_file()]
    size = sum(p.stat().st_size for p in [*files, *checkpoint.rglob("*")] if p.is_file())
    if size > LIMIT:  # refused before anything published is touched
        raise ValueError(
            f"{run} is {size / 2**20:.1f} MB, over the 2 MB limit for published weights"
        )
    out = WEIGHTS / cell
    new = WEIGHTS / f".{cell}.new"  # written in full, then swapped in
    shutil.rmtree(new, ignore_errors=True)
    (new / "checkpoints").mkdir(parents=True)
    for path in files:
        shutil.copy(path, new / path.name)
    shutil.copytree(checkpoint, new / "checkpoints" / checkpoint.name)
    shutil.rmtree(out, ignore_errors=True)
    new.rename(out)
    print(f"{out}: step {steps[-1]}, {size / 2**20:.2f} MB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory")
    parser.add_argument("cell", help="folder name under benchmarks/weights/, e.g. maml-5w1s")
    args = parser.parse_args()
    publish(args.run, args.cell)


if __name__ == "__main__":
    main()
