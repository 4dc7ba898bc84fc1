"""Alpha-MAML against badly chosen inner rates (sinusoid, 10-shot, MSE after one step).

MAML at Finn et al.'s inner rate 0.01, and MAML and Alpha-MAML (inner rates learned
by their hypergradient with SGD, outer rate by Adam-HD) from rates 10x too small, 100x
too small and 10x too large, each ``metax train sinusoid`` on the same 600 test tasks.

    .venv/bin/python benchmarks/alpha_maml_rates.py --out runs/alpha [--steps 70000]
"""

import argparse
from pathlib import Path

import jax
import numpy as np
from sinusoid_table import train_once

from metax.train import load

RUNS = {
    "maml, inner rate 0.01 (tuned)": ["--algo", "maml", "--inner-lr", "0.01"],
    "maml, inner rate 0.001 (10x too small)": ["--algo", "maml", "--inner-lr", "0.001"],
    "alpha-maml, from 0.001": ["--algo", "alpha-maml", "--inner-lr", "0.001"],
    "maml, inner rate 0.0001 (100x too small)": ["--algo", "maml", "--inner-lr", "0.0001"],
    "alpha-maml, from 0.0001": ["--algo", "alpha-maml", "--inner-lr", "0.0001"],
    "maml, inner rate 0.1 (10x too large)": ["--algo", "maml", "--inner-lr", "0.1"],
    "alpha-maml, from 0.1": ["--algo", "alpha-maml", "--inner-lr", "0.1"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=70_000)
    args = parser.parse_args()
    print(
        "| run | MSE after 1 step (600 tasks, 95% CI) | learned inner rates (mean over layers) | wall |"
    )
    print("|---|---|---|---|")
    for i, (name, flags) in enumerate(RUNS.items()):
        out = args.out / f"run{i}"
        res, wall = train_once(out, [*flags, "--steps", str(args.steps)])
        rates = load(out)[1].meta_params.hparams
        rate = (
            "-"
            if rates is None
            else f"{np.mean([float(r.mean()) for r in jax.tree.leaves(rates)]):.4f}"
        )
        print(
            f"| {name} | {res['mse'][1]:.3f} +- {res['ci95'][1]:.3f} | {rate} | {wall:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
