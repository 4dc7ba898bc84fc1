"""Writes 20 run folders of Lake et al.'s one-shot task from the npz's evaluation characters.

Lake et al. (2015) released their own 20 runs (``all_runs``); this builds runs in the
same format from Omniglot's 20 evaluation alphabets: run ``r`` takes 20 characters of
evaluation alphabet ``r`` (in the npz's alphabet order), the images of one drawer as
``training/classNN.png`` and of another drawer as ``test/itemNN.png``, with the items
in a random order and ``class_labels.txt`` naming each item's class. 105 x 105 PNGs,
white background, as in the original.

Usage:
  python benchmarks/lake_runs.py --data ../shared/data/omniglot/omniglot_105.npz --out /tmp/lake-runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from metax.data import read_npz


def write_lake_runs(npz: Path, out: Path, *, ways: int = 20, seed: int = 0) -> list[str]:
    """Writes one run per evaluation alphabet under ``out``; returns the alphabets in run order."""
    f = read_npz(npz)  # checked: keys, shapes, alphabet indices
    images, alphabet, background = f["images"], f["alphabet"], f["is_background"]
    names = [str(n) for n in f["alphabet_names"]]
    rng = np.random.default_rng(seed)
    evaluation = [a for a in np.unique(alphabet[~background]) if (alphabet == a).sum() >= ways]
    for r, a in enumerate(evaluation, 1):
        run = out / f"run{r:02d}"
        (run / "training").mkdir(parents=True, exist_ok=True)
        (run / "test").mkdir(exist_ok=True)
        chars = rng.choice(np.flatnonzero(alphabet == a), ways, replace=False)
        train_drawer, test_drawer = rng.choice(images.shape[1], 2, replace=False)
        order = rng.permutation(ways)  # item i shows class order[i]
        lines = []
        for k, c in enumerate(chars):
            png = Image.fromarray(images[c, train_drawer].astype(np.uint8) * 255)
            png.convert("1").save(run / "training" / f"class{k + 1:02d}.png")
        for i, k in enumerate(order):
            png = Image.fromarray(images[chars[k], test_drawer].astype(np.uint8) * 255)
            png.convert("1").save(run / "test" / f"item{i + 1:02d}.png")
            lines.append(
                f"run{r:02d}/test/item{i + 1:02d}.png run{r:02d}/training/class{k + 1:02d}.png"
            )
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    return [names[a] for a in evaluation]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="omniglot_105.npz")
    parser.add_argument("--out", type=Path, required=True, help="folder for run01..run20")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for r, name in enumerate(write_lake_runs(args.data, args.out, seed=args.seed), 1):
        print(f"run{r:02d}: {name}")


if __name__ == "__main__":
    main()
