"""The ``metax`` command line: ``metax train sinusoid ...`` and ``metax eval RUN_DIR``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from metax.nn import BN_POLICIES, CONV_STRATEGIES
from metax.train.config import ALGOS, SinusoidConfig

_DEFAULTS = SinusoidConfig()


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


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
    parser.add_argument(
        "--heap",
        choices=("resident", "default"),
        default="resident",
        help="resident: keep freed XLA:CPU buffers in the process (faster steps, more peak memory;"
        " see metax.keep_cpu_heap_resident); default: glibc's own malloc settings",
    )
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

    from metax.train.omniglot import ALGOS as OMNIGLOT_ALGOS
    from metax.train.omniglot import INNER_BN, SPLITS, OmniglotConfig

    o = OmniglotConfig
    omni = families.add_parser("omniglot", help="N-way K-shot Omniglot classification (Conv-4)")
    omni.add_argument("--data", default=o.data, help="Omniglot npz, PNG folder/zip, or 'tfds'")
    omni.add_argument("--split", choices=SPLITS, default=o.split)
    omni.add_argument("--algo", choices=OMNIGLOT_ALGOS, default=o.algo)
    omni.add_argument("--ways", type=_positive_int, default=o.ways)
    omni.add_argument("--shots", type=_positive_int, default=o.shots)
    omni.add_argument(
        "--queries",
        type=_positive_int,
        default=o.queries,
        help="query examples per class (training)",
    )
    omni.add_argument(
        "--eval-queries",
        type=_positive_int,
        default=o.eval_queries,
        help="query examples per class at validation and test (default: --queries)",
    )
    omni.add_argument("--inner-steps", type=_positive_int, default=o.inner_steps)
    omni.add_argument("--eval-inner-steps", type=_positive_int, default=o.eval_inner_steps)
    omni.add_argument("--inner-lr", type=_positive_float, default=o.inner_lr)
    omni.add_argument("--outer-lr", type=_positive_float, default=o.outer_lr)
    omni.add_argument("--meta-batch", type=_positive_int, default=o.meta_batch)
    omni.add_argument(
        "--chunk-size", type=_positive_int, default=None, help="tasks per chunk (bounds memory)"
    )
    omni.add_argument("--steps", type=_positive_int, default=o.steps)
    omni.add_argument("--features", type=_positive_int, default=o.features)
    omni.add_argument("--backbone", choices=("conv4", "resnet12"), default=o.backbone)
    omni.add_argument("--bn-policy", choices=("auto", *BN_POLICIES), default=o.bn_policy)
    omni.add_argument(
        "--inner-bn",
        choices=INNER_BN,
        default=o.inner_bn,
        help="fine-tune batch-norm weights in the inner loop, or learn them in the outer loop only",
    )
    omni.add_argument("--conv-strategy", choices=CONV_STRATEGIES, default=o.conv_strategy)
    omni.add_argument("--seed", type=int, default=o.seed)
    omni.add_argument("--log-every", type=_positive_int, default=o.log_every)
    omni.add_argument(
        "--eval-every", type=_non_negative_int, default=o.eval_every, help="0 disables"
    )
    omni.add_argument("--checkpoint-every", type=_positive_int, default=o.checkpoint_every)
    omni.add_argument("--val-episodes", type=_positive_int, default=o.val_episodes)
    omni.add_argument("--test-episodes", type=_positive_int, default=o.test_episodes)
    omni.add_argument("--first-order-epochs", type=_non_negative_int, default=o.first_order_epochs)
    omni.add_argument("--out", type=Path, required=True, help="run directory")
    omode = omni.add_mutually_exclusive_group()
    omode.add_argument("--resume", action="store_true", help="continue the run in --out")
    omode.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    omni.add_argument("--no-progress", action="store_true", help="no progress bar")

    lake = commands.add_parser(
        "eval-lake", help="Lake et al.'s 20-run one-shot protocol on a saved Omniglot run"
    )
    lake.add_argument("runs_dir", type=Path, help="folder with run01..run20")
    lake.add_argument(
        "--checkpoint", type=Path, required=True, help="an Omniglot run directory (20-way 1-shot)"
    )

    ev = commands.add_parser("eval", help="evaluate a saved run on fresh test tasks")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--eval-tasks", type=_positive_int, default=None)
    ev.add_argument("--eval-steps", type=_positive_int, default=None)
    ev.add_argument(
        "--eval-queries",
        type=_positive_int,
        default=None,
        help="query examples per class (Omniglot) or query points (sinusoid); default: the run's",
    )
    ev.add_argument(
        "--step", type=_non_negative_int, default=None, help="checkpoint step (default: latest)"
    )
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


def _train_omniglot(args: argparse.Namespace) -> dict:
    from metax.train import omniglot

    names = [f.name for f in dataclasses.fields(omniglot.OmniglotConfig)]
    config = omniglot.OmniglotConfig(**{n: getattr(args, n) for n in names if hasattr(args, n)})
    return omniglot.train(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def _is_omniglot_run(run_dir: Path) -> bool:
    try:
        return "ways" in json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False  # the sinusoid loader reports what is wrong


def _eval(args: argparse.Namespace) -> dict:
    from metax.train import omniglot, sinusoid

    family = omniglot if _is_omniglot_run(args.run_dir) else sinusoid
    tasks, steps = (
        ("test_episodes", "eval_inner_steps")
        if family is omniglot
        else ("eval_tasks", "eval_steps")
    )
    given = {tasks: args.eval_tasks, steps: args.eval_steps, "eval_queries": args.eval_queries}
    config, problem, state = family.load_run(
        args.run_dir, step=args.step, **{k: v for k, v in given.items() if v}
    )
    results = family.evaluate_run(config, problem, state, args.run_dir)
    _save_eval(args.run_dir, results)
    return results


def _save_eval(run_dir: Path, results: dict) -> None:
    """``eval.json`` holds the latest evaluation; ``evals.jsonl`` keeps every one."""
    (run_dir / "eval.json").write_text(json.dumps(results, indent=2))
    with open(run_dir / "evals.jsonl", "a") as f:
        f.write(json.dumps(results) + "\n")


def _report(results: dict) -> None:
    if "error_rate" in results:
        for run, err in results["runs"].items():
            print(f"  {run}: error {100 * err:.1f}%")
        print(
            f"Lake one-shot protocol, {len(results['runs'])} runs: error rate {100 * results['error_rate']:.2f}%"
        )
        return
    if "test_accuracy" in results:
        print(
            f"{results['algo']} {results['ways']}-way {results['shots']}-shot after {results['steps_trained']} "
            f"meta-steps: test accuracy {100 * results['test_accuracy']:.2f} +- {100 * results['ci95']:.2f}% "
            f"(95% CI, {results['test_episodes']} episodes)"
        )
        return
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
    from metax import cpu_heap

    if args.heap == "resident":
        cpu_heap.keep_cpu_heap_resident()  # before the first JAX computation
    from metax.train.checkpoint import CheckpointError
    from metax.train.loop import NonFiniteLossError

    try:
        if args.command == "train":
            results = _train_sinusoid(args) if args.family == "sinusoid" else _train_omniglot(args)
        elif args.command == "eval-lake":
            from metax.train.lake import evaluate_lake

            results = evaluate_lake(args.runs_dir, args.checkpoint)
        else:
            results = _eval(args)
    except ValueError as e:  # bad values that passed the parser (config validation)
        parser.exit(2, f"metax: error: {e}\n")
    except (
        FileExistsError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        CheckpointError,
        NonFiniteLossError,
        ImportError,  # e.g. --data tfds without tensorflow-datasets
        RuntimeError,  # e.g. TFDS not prepared and offline
    ) as e:
        parser.exit(1, f"metax: error: {e}\n")
    _report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
