"""Lake et al.'s 20-run one-shot task on run folders rebuilt from the npz, for a saved model.

Builds the runs with ``lake_runs.py`` (``--seed``), or takes existing run folders
(``--runs``, e.g. Lake et al.'s own ``all_runs``, naming each run's alphabet from the
npz), scores the model in ``--checkpoint`` transductively and image by image, prints the
per-run table with the reference points, and writes the figures to ``--json`` (e.g.
``benchmarks/weights/lake-20w1s/lake.json``, which ``tests/test_lake.py`` checks the
published model against).

    .venv/bin/python benchmarks/lake_eval.py --data ../shared/data/omniglot/omniglot_105.npz \
        --checkpoint runs/lake-20w1s --json runs/lake-20w1s/lake.json
    .venv/bin/python benchmarks/lake_eval.py --data ../shared/data/omniglot/omniglot_105.npz \
        --runs path/to/all_runs --checkpoint benchmarks/weights/lake-20w1s --json lake2015.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from lake_runs import identify_runs, write_lake_runs

from metax.train.lake import evaluate_lake

REFERENCES = {  # error rates, Lake et al. (2015) and Lake et al. (2019)
    "people": 4.5,
    "Bayesian program learning": 3.3,
    "deep Siamese ConvNet": 8.0,
    "deep ConvNet": 13.5,
    "Prototypical Networks (2019 report)": 13.7,
    "modified Hausdorff distance": 38.8,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="omniglot_105.npz")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a 20-way 1-shot run")
    parser.add_argument("--json", type=Path, required=True, help="where the figures go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run folders")
    parser.add_argument("--like-lake2015", action="store_true", help="Lake's alphabets, drawers")
    parser.add_argument("--runs", type=Path, help="score these run folders instead of new ones")
    args = parser.parse_args()
    if not args.json.parent.is_dir():  # checked before the evaluation, not after it
        parser.error(f"--json: no folder {args.json.parent}")
    if args.runs is not None:
        found = identify_runs(args.data, args.runs)
        alphabets = ["+".join(run["alphabet"]) or "?" for run in found.values()]
        result = evaluate_lake(args.runs, args.checkpoint, per_image=True)
        result.update(runs=str(args.runs), alphabets=alphabets, found_in_npz=found)
    else:
        with tempfile.TemporaryDirectory() as runs:
            like = args.like_lake2015
            alphabets = write_lake_runs(args.data, Path(runs), seed=args.seed, like_lake2015=like)
            result = evaluate_lake(runs, args.checkpoint, per_image=True)
        result.update(runs_seed=args.seed, like_lake2015=like, alphabets=alphabets)
    args.json.write_text(json.dumps(result, indent=2))
    print("| run | alphabet | error, transductive | error, per image |")
    print("|---|---|---|---|")
    for (run, t), name in zip(result["transductive"]["runs"].items(), alphabets, strict=True):
        p = result["per_image"]["runs"][run]
        print(f"| {run} | {name} | {100 * t:.0f}% | {100 * p:.0f}% |")
    t, p = result["transductive"]["error_rate"], result["per_image"]["error_rate"]
    print(f"| all {len(alphabets)} | | **{100 * t:.2f}%** | **{100 * p:.2f}%** |")
    for name, error in REFERENCES.items():
        print(f"| {name} | | {error}% | |")


if __name__ == "__main__":
    main()
