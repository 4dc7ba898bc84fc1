"""Lake et al.'s original one-shot protocol: 20 runs of 20-way 1-shot classification.

A runs folder holds ``run01`` .. ``run20``; each has ``training/classNN.png`` (one
image per class), ``test/itemNN.png`` and ``class_labels.txt`` whose lines read
``runXX/test/itemNN.png runXX/training/classMM.png`` (the true class of each item).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metax._src.base import Task
from metax.data.omniglot import _decode_png, ink_from_white_background, resize_ink
from metax.train import omniglot as og

_CLASS = re.compile(r"class(\d+)\.png$")


def _read_images(paths: list[Path]) -> np.ndarray:
    white = []
    shape = None
    for path in paths:
        img = _decode_png(str(path), path.read_bytes())
        if shape is not None and img.shape != shape:
            raise ValueError(
                f"mixed image sizes: {path} is {img.shape[::-1]}, expected {shape[::-1]}."
            )
        shape = img.shape
        white.append(img)
    return resize_ink(ink_from_white_background(np.stack(white)), 28)


def read_run(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(training images [C, 28, 28], test images [T, 28, 28], true class index [T])`` of one run."""
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
    for number, line in enumerate(labels_file.read_text().split("\n"), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or _CLASS.search(parts[1]) is None:
            raise ValueError(
                f"{labels_file}:{number}: expected 'runXX/test/itemNN.png runXX/training/classMM.png', got {line!r}"
            )
        item, cls = Path(parts[0]).name, Path(parts[1]).name
        if cls not in index:
            raise ValueError(
                f"{labels_file}:{number}: {cls} is not among the training images of {run_dir}"
            )
        test_paths.append(run_dir / "test" / item)
        truth.append(index[cls])
    missing = [p for p in test_paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing test images: {[str(p) for p in missing[:5]]}")
    return _read_images(train_paths), _read_images(test_paths), np.asarray(truth)


def evaluate_lake(runs_dir: str | Path, checkpoint: str | Path) -> dict[str, Any]:
    """Error rate per run and overall of the model in the run directory ``checkpoint``.

    Each run is one episode: fine-tune on the training images (class ``k`` = the
    ``k``-th ``classNN.png``), classify the test images. The model must have been
    meta-trained as ``len(training images)``-way 1-shot.
    """
    runs_dir = Path(runs_dir)
    run_dirs = sorted(p for p in runs_dir.glob("run*") if p.is_dir())
    if not run_dirs:
        raise FileNotFoundError(f"no run01..run20 folders in {runs_dir}")
    runs = [read_run(r) for r in run_dirs]
    ways = runs[0][0].shape[0]
    config = og.OmniglotConfig.load(Path(checkpoint) / "config.json")
    if config.ways != ways or config.shots != 1:
        raise ValueError(
            f"the runs are {ways}-way 1-shot but the checkpoint was meta-trained {config.ways}-way "
            f"{config.shots}-shot; train with --ways {ways} --shots 1."
        )
    config, problem, state = og.load_run(checkpoint)
    score = jax.jit(og.make_episode_scorer(config, problem))
    per_run = {}
    for run_dir, (train_x, test_x, truth) in zip(run_dirs, runs, strict=True):
        task = Task(
            support={
                "x": jnp.asarray(train_x, jnp.float32)[..., None] / 255.0,
                "y": jnp.arange(ways, dtype=jnp.int32),
            },
            query={
                "x": jnp.asarray(test_x, jnp.float32)[..., None] / 255.0,
                "y": jnp.asarray(truth, jnp.int32),
            },
        )
        logits, _ = score(state.meta_params, state.model_state, task)
        predicted = np.asarray(jnp.argmax(logits, -1))
        per_run[run_dir.name] = float(np.mean(predicted != truth))
    return {
        "runs": per_run,
        "error_rate": float(np.mean(list(per_run.values()))),
        "checkpoint": str(checkpoint),
    }
