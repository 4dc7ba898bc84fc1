"""Reproduces the MAML and Meta-SGD rows of Meta-SGD's Table 1 (sinusoid, MSE after one step).

Runs ``metax train sinusoid`` for every (algorithm, K) pair, one process each,
and prints a markdown table of MSE +- 95% CI on the same 600 test tasks, with the
wall time of each run.

    .venv/bin/python benchmarks/sinusoid_table.py --out runs/sinusoid-table [--steps 70000]
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

# Li et al. (2017), Table 1: MSE after one step, 95% CI.
PAPER = {
    "maml": {5: "1.13 +- 0.18", 10: "0.77 +- 0.11", 20: "0.48 +- 0.08"},
    "meta-sgd": {5: "0.90 +- 0.16", 10: "0.53 +- 0.09", 20: "0.31 +- 0.05"},
}


def train_once(run: Path, flags: list[str]) -> tuple[dict, float]:
    """``metax train sinusoid FLAGS --out RUN`` (resumed if unfinished, skipped if done):
    the results and the wall time of the run."""
    if (run / "results.json").exists():
        print(f"skip {run} (done)", flush=True)
        wall = json.loads((run / "wall.json").read_text())["seconds"]
    else:
        cmd = [sys.executable, "-m", "metax.cli", "train", "sinusoid", *flags, "--out", str(run)]
        cmd += ["--no-progress", *(["--resume"] if (run / "config.json").exists() else [])]
        print(" ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        (run / "wall.json").write_text(json.dumps({"seconds": wall}))
    return json.loads((run / "results.json").read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=70_000)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--algos", nargs="+", default=["maml", "pretrain", "fomaml", "maml++"])
    args = parser.parse_args()
    rows = []
    for shots in args.shots:
        for algo in args.algos:
            flags = ["--algo", algo, "--shots", str(shots), "--steps", str(args.steps)]
            res, wall = train_once(args.out / f"{algo}-k{shots}", flags)
            rows.append((shots, algo, res, wall))

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        "| K | algorithm | MSE after 1 step (600 tasks, 95% CI) | after 10 steps | "
        "Meta-SGD paper | wall time |"
    )
    print("|---|---|---|---|---|---|")
    for shots, algo, res, wall in rows:
        one = f"{res['mse'][1]:.3f} +- {res['ci95'][1]:.3f}"
        ten = f"{res['mse'][10]:.3f} +- {res['ci95'][10]:.3f}"
        paper = PAPER.get(algo, {}).get(shots, "")
        print(f"| {shots} | {algo} | {one} | {ten} | {paper} | {wall:.0f} s |")


if __name__ == "__main__":
    main()
