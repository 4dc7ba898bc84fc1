"""Lake et al.'s original one-shot protocol: 20 runs of 20-way 1-shot classification.

A runs folder holds ``run01`` .. ``run20``; each has ``training/classNN.png`` (one
image per class), ``test/itemNN.png`` and ``class_labels.txt`` whose lines read
``runXX/test/itemNN.png runXX/training/classMM.png`` (the true class of each item).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from metax._src.base import Task
from metax.data.omniglot import ink_from_white_background, model_input, resize_ink
from metax.data.png import decode_pngs

_CLASS = re.compile(r"class(\d+)\.png$")


def _read_images(paths: list[Path], size: int) -> np.ndarray:
    white = decode_pngs((str(path), path.read_bytes()) for path in paths)
    return resize_ink(ink_from_white_background(white), size)


def read_run(run_dir: Path, *, size: int = 28) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(training images [C, size, size], test images [T, size, size], true class [T])`` of a run."""
    labels_file = run_dir / "class_labels.txt"
    if not labels_file.is_file():
        raise FileNotFoundError(
            f"{labels_file} is missing (expected lines 'runXX/test/itemNN.png runXX/training/classMM.png')."
        )
    train_paths = sorted((run_dir / "training").glob("class*.png"))
    if not train_paths:
        raise FileNotFoundError(f"no training/classNN.png images in {run_dir}")
    index = {p.name: i for i, p in enumerate(train_paths)}
    test_paths, truth = [], []
    lines = [
        (n, line) for n, line in enumerate(labels_file.read_text().split("\n"), 1) if line.strip()
    ]
    for number, line in lines:
        parts = line.split()
        if len(parts) != 2 or _CLASS.search(parts[1]) is None:
            raise ValueError(
                f"{labels_file}:{number}: expected 'runXX/test/itemNN.png runXX/training/classMM.png', got {line!r}"
            )
        for path, folder in zip(parts, ("test", "training"), strict=True):
            where = Path(path).parts[-3:-1]
            if len(where) == 2 and where != (run_dir.name, folder):
                raise ValueError(
                    f"{labels_file}:{number}: {path} is not in {run_dir.name}/{folder} "
                    "(the class_labels.txt of another run?)"
                )
        item, cls = Path(parts[0]).name, Path(parts[1]).name
        if run_dir / "test" / item in test_paths:
            raise ValueError(f"{labels_file}:{number}: test/{item} is named a second time")
        if cls not in index:
            raise ValueError(
                f"{labels_file}:{number}: {cls} is not among the training images of {run_dir}"
            )
        test_paths.append(run_dir / "test" / item)
        truth.append(index[cls])
    unnamed = sorted(set(index) - {train_paths[k].name for k in truth})
    if unnamed:
        raise ValueError(
            f"{run_dir}/training/{unnamed[0]} is named by no line of {labels_file} (an extra class image?)"
        )
    unlabelled = sorted(
        {p.name for p in (run_dir / "test").glob("*.png")} - {p.name for p in test_paths}
    )
    if unlabelled:
        raise ValueError(
            f"{run_dir}/test/{unlabelled[0]} is named by no line of {labels_file} (an extra test image?)"
        )
    missing = [p for p in test_paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing test images: {[str(p) for p in missing[:5]]}")
    return _read_images(train_paths, size), _read_images(test_paths, size), np.asarray(truth)


def run_folders(runs_dir: str | Path) -> list[Path]:
    """The ``run*`` folders of ``runs_dir``, sorted; raises FileNotFoundError if none."""
    run_dirs = sorted(p for p in Path(runs_dir).glob("run*") if p.is_dir())
    if not run_dirs:
        raise FileNotFoundError(f"no run01..run20 folders in {runs_dir}")
    return run_dirs


def run_ways(runs_dir: str | Path) -> int:
    """The classes of each run (its ``training/class*.png``), the same for every run.

    Raises:
      FileNotFoundError: no ``run*`` folders.
      ValueError: runs of different numbers of classes, naming those that differ from
        the most common number.
    """
    counts = {r.name: len(list((r / "training").glob("class*.png"))) for r in run_folders(runs_dir)}
    usual = Counter(counts.values()).most_common(1)[0][0]
    odd = {name: n for name, n in counts.items() if n != usual}
    if odd:
        raise ValueError(
            f"every run must be the same N-way task: the runs have {usual} training images, "
            f"except {odd}."
        )
    return usual


def read_runs(runs_dir: str | Path, *, size: int = 28) -> dict[str, Task]:
    """Every ``run*`` folder of ``runs_dir`` as one episode, by run name.

    The support set holds the training images, class ``k`` being the ``k``-th
    ``classNN.png`` in name order; the query set the test images with their true
    classes from ``class_labels.txt`` (matched by file name, whatever the line order).

    Raises:
      FileNotFoundError: no ``run*`` folders, or a missing file (named).
      ValueError: a malformed ``class_labels.txt`` line (named with its number), a
        training image that no line names, or runs of different numbers of classes.
    """
    run_ways(runs_dir)
    episodes = {}
    for run_dir in run_folders(runs_dir):
        train_x, test_x, truth = read_run(run_dir, size=size)
        episodes[run_dir.name] = Task(
            support={"x": model_input(train_x), "y": np.arange(len(train_x), dtype=np.int32)},
            query={"x": model_input(test_x), "y": truth.astype(np.int32)},
        )
    return episodes
