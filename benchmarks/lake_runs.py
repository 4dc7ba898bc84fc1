"""Writes 20 run folders of Lake et al.'s one-shot task from the npz's evaluation characters.

Lake et al. (2015) released their own 20 runs (``all_runs.zip`` in github.com/brendenlake/
omniglot, ``python/one-shot-classification``); :func:`identify_runs` finds where each of
their images is in the npz (:data:`LAKE2015_ALPHABETS`, two runs each, drawers 1-8).
This builds runs in the same format from Omniglot's 20 evaluation alphabets: run ``r``
takes 20 characters of evaluation alphabet ``r`` (in the npz's alphabet order), the
images of one drawer as ``training/classNN.png`` and of another drawer as
``test/itemNN.png``, with the items in a random order and ``class_labels.txt`` naming
each item's class. 105 x 105 PNGs, white background, as in the original. With
``--like-lake2015`` the runs take Lake et al.'s alphabets and drawers instead (their
characters and drawer pairs drawn anew).

Usage:
  python benchmarks/lake_runs.py --data ../shared/data/omniglot/omniglot_105.npz --out /tmp/lake-runs
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from metax.data import read_npz

# The alphabets of Lake et al.'s released runs, each in two runs, all drawn by drawers 1-8.
LAKE2015_ALPHABETS = (
    "Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
    "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan",
)  # fmt: skip


def write_lake_runs(
    npz: Path, out: Path, *, ways: int = 20, seed: int = 0, like_lake2015: bool = False
) -> list[str]:
    """Writes 20 runs under ``out``; returns their alphabets in run order.

    One run per evaluation alphabet and drawers from all 20, or with ``like_lake2015``
    two runs per alphabet of :data:`LAKE2015_ALPHABETS` and drawers from the first 8.
    """
    f = read_npz(npz)  # checked: keys, shapes, alphabet indices
    images, alphabet, background = f["images"], f["alphabet"], f["is_background"]
    names = [str(n) for n in f["alphabet_names"]]
    rng = np.random.default_rng(seed)
    evaluation = [a for a in np.unique(alphabet[~background]) if (alphabet == a).sum() >= ways]
    drawers = images.shape[1]
    if like_lake2015:
        evaluation = [names.index(name) for name in LAKE2015_ALPHABETS for _ in range(2)]
        drawers = 8
    for r, a in enumerate(evaluation, 1):
        run = out / f"run{r:02d}"
        (run / "training").mkdir(parents=True, exist_ok=True)
        (run / "test").mkdir(exist_ok=True)
        chars = rng.choice(np.flatnonzero(alphabet == a), ways, replace=False)
        train_drawer, test_drawer = rng.choice(drawers, 2, replace=False)
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


def identify_runs(npz: Path, runs_dir: Path) -> dict[str, dict]:
    """Each run folder's alphabet and drawers (0-based), found by exact pixel match in the npz.

    ``not_found`` counts the images found nowhere in the npz; an alphabet or drawer list
    with several entries means the run mixes them.
    """
    f = read_npz(npz)
    images, alphabet = f["images"], f["alphabet"]
    names = [str(n) for n in f["alphabet_names"]]
    digest = lambda a: hashlib.sha1(np.packbits(a).tobytes()).digest()  # noqa: E731
    where = {
        digest(images[c, d]): (c, d) for c in range(len(images)) for d in range(images.shape[1])
    }

    def find(png: Path) -> tuple[int, int] | None:
        return where.get(digest(np.asarray(Image.open(png).convert("L")) > 127))

    found = {}
    for run in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        train = [find(p) for p in sorted((run / "training").glob("*.png"))]
        test = [find(p) for p in sorted((run / "test").glob("*.png"))]
        hits = [h for h in train + test if h is not None]
        found[run.name] = {
            "alphabet": sorted({names[alphabet[c]] for c, _ in hits}),
            "training_drawers": sorted({h[1] for h in train if h}),
            "test_drawers": sorted({h[1] for h in test if h}),
            "not_found": len(train) + len(test) - len(hits),
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="omniglot_105.npz")
    parser.add_argument("--out", type=Path, required=True, help="folder for run01..run20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--like-lake2015", action="store_true", help="Lake's alphabets, drawers")
    args = parser.parse_args()
    like = args.like_lake2015
    alphabets = write_lake_runs(args.data, args.out, seed=args.seed, like_lake2015=like)
    for r, name in enumerate(alphabets, 1):
        print(f"run{r:02d}: {name}")


if __name__ == "__main__":
    main()
