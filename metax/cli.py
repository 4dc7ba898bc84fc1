"""The ``metax`` command line: ``metax train sinusoid ...`` and ``metax eval RUN_DIR``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from metax.train.config import ALGOS, SinusoidConfig

_DEFAULTS = SinusoidConfig()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _positive_int(text) if text.strip() != "0" else 0
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated widths like 40,40, got {text!r}"
        ) from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"widths must be >= 1, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``metax`` command."""
    parser = argparse.ArgumentParser(prog="metax", description="Functional meta-learning in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train on a task family")
    families = train.add_subparsers(dest="family", required=True)
    sin = families.add_parser(
        "sinusoid", help="sinusoid regression (Finn et al., 2017); no download"
    )
    d = _DEFAULTS
    sin.add_argument(
        "--algo", choices=ALGOS, default=d.algo, help="algorithm (pretrain: non-meta baseline)"
    )
    sin.add_argument(
        "--shots", type=_positive_int, default=d.shots, help="support points per task (K)"
    )
    sin.add_argument(
        "--queries",
        type=_positive_int,
        default=None,
        help="query points per training task (default K)",
    )
    sin.add_argument("--inner-steps", type=_positive_int, default=d.inner_steps)
    sin.add_argument("--inner-lr", type=_positive_float, default=d.inner_lr)
    sin.add_argument("--outer-lr", type=_positive_float, default=d.outer_lr)
    sin.add_argument("--meta-batch", type=_positive_int, default=d.meta_batch)
    sin.add_argument("--steps", type=_positive_int, default=d.steps, help="meta-steps")
    sin.add_argument("--hidden", type=_widths, default=d.hidden, help="hidden widths, e.g. 40,40")
    sin.add_argument("--seed", type=int, default=d.seed)
    sin.add_argument("--log-every", type=_positive_int, default=d.log_every)
    sin.add_argument(
        "--eval-every", type=_non_negative_int, default=d.eval_every, help="0 disables"
    )
    sin.add_argument("--checkpoint-every", type=_positive_int, default=d.checkpoint_every)
    sin.add_argument("--eval-tasks", type=_positive_int, default=d.eval_tasks)
    sin.add_argument("--eval-steps", type=_positive_int, default=d.eval_steps)
    sin.add_argument(
        "--first-order-epochs",
        type=_non_negative_int,
        default=d.first_order_epochs,
        help="MAML++ derivative-order annealing",
    )
    sin.add_argument("--out", type=Path, required=True, help="run directory")
    mode = sin.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    sin.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = commands.add_parser("eval", help="evaluate a saved run on fresh test tasks")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--eval-tasks", type=_positive_int, default=None)
    ev.add_argument("--eval-steps", type=_positive_int, default=None)
    return parser


def _train_sinusoid(args: argparse.Namespace) -> dict:
    from metax.train import sinusoid

    config = SinusoidConfig(
        algo=args.algo,
        shots=args.shots,
        queries=args.queries,
        inner_steps=args.inner_steps,
        inner_lr=args.inner_lr,
        outer_lr=args.outer_lr,
        meta_batch=args.meta_batch,
        steps=args.steps,
        hidden=args.hidden,
        seed=args.seed,
        log_every=args.log_every,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        eval_tasks=args.eval_tasks,
        eval_steps=args.eval_steps,
        first_order_epochs=args.first_order_epochs,
    )
    return sinusoid.train(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def _eval(args: argparse.Namespace) -> dict:
    from metax.train import sinusoid

    config, problem, meta_params = sinusoid.load_run(args.run_dir)
    overrides = {
        k: v for k, v in (("eval_tasks", args.eval_tasks), ("eval_steps", args.eval_steps)) if v
    }
    config = dataclasses.replace(config, **overrides)
    results = sinusoid.evaluate_run(config, problem, meta_params, args.run_dir)
    (args.run_dir / "eval.json").write_text(json.dumps(results, indent=2))
    return results


def _report(results: dict) -> None:
    print(f"{results['algo']} {results['shots']}-shot on {results['num_tasks']} test tasks:")
    for k, (m, c) in enumerate(zip(results["mse"], results["ci95"], strict=True)):
        if k in (0, 1, len(results["mse"]) - 1):
            diverged = results["diverged_tasks"][k]
            note = f"  ({diverged} task(s) diverged)" if diverged else ""
            print(f"  MSE after {k:2d} step(s): {m:.3f} +- {c:.3f} (95% CI){note}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metax`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from metax.train.checkpoint import CheckpointError
    from metax.train.loop import NonFiniteLossError

    try:
        results = _train_sinusoid(args) if args.command == "train" else _eval(args)
    except ValueError as e:  # bad values that passed the parser (config validation)
        parser.exit(2, f"metax: error: {e}\n")
    except (
        FileExistsError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        CheckpointError,
        NonFiniteLossError,
    ) as e:
        parser.exit(1, f"metax: error: {e}\n")
    _report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
