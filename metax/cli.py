"""The ``metax`` command: ``metax train FAMILY ...``, ``metax eval RUN``, ``metax eval-lake``.

The flags of ``metax train FAMILY`` are generated from the family's config dataclass:
one flag per field, its help from the field's docstring, its check the one the
config itself applies, so the command line and the Python API never disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metax.extras import missing_modules

if TYPE_CHECKING:
    from metax.train.config import RunConfig


def _parser_for(cls, name: str, kind: str):
    """An argparse ``type`` that converts a flag's text and applies the config's check."""
    from metax.train.config import check_value

    widths = lambda text: tuple(int(w) for w in text.split(","))  # noqa: E731
    convert = {"widths": widths, "rate": float, "damping": float, "path": str}.get(kind, int)
    expected = {widths: "comma-separated widths like 40,40", float: "a number", int: "an integer"}
    optional = {f.name: f.default for f in dataclasses.fields(cls)}[name] is None

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":  # e.g. --chunk-size none: the whole meta-batch
            return None
        try:
            value = convert(text)
        except ValueError:
            also = " or none" if optional else ""
            raise argparse.ArgumentTypeError(
                f"expected {expected[convert]}{also}, got {text!r}"
            ) from None
        problem = check_value(cls, name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem.rstrip("."))
        return value

    return parse


def _add_config_flags(parser: argparse.ArgumentParser, cls, names: Sequence[str] = ()) -> None:
    """One flag per field of ``cls`` (only ``names`` if given: then the run's value is the default)."""
    from metax.train.algorithms import ALGORITHMS
    from metax.train.config import field_help, field_kind

    docs = field_help(cls)
    for f in dataclasses.fields(cls):
        if names and f.name not in names:
            continue
        kind = field_kind(cls, f.name)
        flag = "--" + f.name.replace("_", "-")
        help_text = docs.get(f.name, "").replace("``", "").replace("%", "%%")  # argparse formats
        # SUPPRESS: only the flags given reach the namespace (a resumed run changes just those)
        shown = ",".join(map(str, f.default)) if kind == "widths" else f.default
        shown = "the run's" if names else shown
        options = {"default": argparse.SUPPRESS, "help": f"{help_text} (default: {shown})"}
        if kind == "choice":
            options["choices"] = cls.choices[f.name]
        else:
            options["type"] = _parser_for(cls, f.name, kind)
        if f.name == "algo":
            listing = "; ".join(f"{name}: {a.help}" for name, a in ALGORITHMS.items())
            options["help"] = f"the meta-learning algorithm ({listing}) (default: {shown})"
        if kind == "path" and not f.default:
            options["help"] = f"{help_text} (required, except with --resume)"
        parser.add_argument(flag, **options)


def _add_process_flags(group) -> None:
    group.add_argument(
        "--coordinator",
        default=None,
        help="HOST:PORT of process 0: join a run of several processes (jax.distributed); "
        "--devices then counts the devices of all of them",
    )
    group.add_argument("--num-processes", type=int, default=None, help="processes in the run")
    group.add_argument("--process-id", type=int, default=None, help="this process's index")
    group.add_argument(
        "--join-timeout", type=int, default=120, help="seconds to wait for the other processes"
    )


def _join(args: argparse.Namespace) -> None:
    """Joins the multi-process run the flags describe (before any JAX computation)."""
    from metax import parallel

    flags = (args.coordinator, args.num_processes, args.process_id)
    if any(f is not None for f in flags):
        if any(f is None for f in flags):
            raise ValueError("--coordinator, --num-processes and --process-id go together.")
        parallel.initialize(
            args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            timeout_s=args.join_timeout,
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``metax`` command."""
    from metax.train.config import EVAL_MAY_CHANGE, RunConfig
    from metax.train.run import FAMILIES

    parser = argparse.ArgumentParser(prog="metax", description="Functional meta-learning in JAX.")
    parser.add_argument(
        "--heap",
        choices=("resident", "default"),
        default="resident",
        help="resident: keep freed XLA:CPU buffers in the process (faster steps, more peak "
        "memory; see metax.cpu_heap); default: glibc's own malloc settings",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="meta-train on a task family")
    families = train.add_subparsers(dest="family", required=True)
    for name, family in FAMILIES.items():
        sub = families.add_parser(name, help=(family.__doc__ or "").splitlines()[0])
        _add_config_flags(sub, family.config_class)
        sub.add_argument("--out", type=Path, required=True, help="run directory")
        mode = sub.add_mutually_exclusive_group()
        mode.add_argument("--resume", action="store_true", help="continue the run in --out")
        mode.add_argument("--overwrite", action="store_true", help="replace the run in --out")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        _add_process_flags(sub.add_argument_group("several processes (hosts)"))

    lake = commands.add_parser(
        "eval-lake", help="Lake et al.'s 20-run one-shot protocol on a saved Omniglot run"
    )
    lake.add_argument("runs_dir", type=Path, help="folder with run01..run20")
    lake.add_argument(
        "--checkpoint", type=Path, required=True, help="an Omniglot run directory (20-way 1-shot)"
    )
    lake.add_argument(
        "--per-image",
        action="store_true",
        help="also score each test image alone (batch statistics of the support set and that "
        "image), beside the transductive score of all test images at once",
    )

    ev = commands.add_parser("eval", help="evaluate a saved run on its test tasks")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    _add_config_flags(ev, RunConfig, [n for n in EVAL_MAY_CHANGE if n != "data"])
    ev.add_argument(
        "--data", default=argparse.SUPPRESS, help="Omniglot's data, if not where the run had it"
    )
    return parser


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunConfig:
    """The run's config from the flags (on resume: the saved one, changed where flags say)."""
    from metax.train import FAMILIES
    from metax.train.config import field_kind
    from metax.train.run import resumed

    cls = FAMILIES[args.family].config_class
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name in args}
    if args.resume:  # the run's settings, changed where flags are given
        config = resumed(args.out, given, family=args.family)
    else:
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if field_kind(cls, f.name) == "path" and not f.default]
        missing = ["--" + n.replace("_", "-") for n in required if n not in given]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
        config = cls(**given)
    return config


def _eval(args: argparse.Namespace) -> dict:
    from metax.train import evaluate, load
    from metax.train.config import EVAL_MAY_CHANGE

    overrides = {n: getattr(args, n) for n in EVAL_MAY_CHANGE if n in args}
    run, state = load(args.run_dir, step=args.step, **overrides)
    try:
        results = evaluate(run, state)
    except FileNotFoundError as e:  # e.g. published weights, trained on another machine's data
        raise FileNotFoundError(f"{e} Pass --data to evaluate the run on data here.") from e
    (args.run_dir / "eval.json").write_text(json.dumps(results, indent=2))
    with open(args.run_dir / "evals.jsonl", "a") as f:  # every evaluation is kept
        f.write(json.dumps(results) + "\n")
    return results


def _report(results: dict) -> None:
    if "transductive" in results:
        scorings = [s for s in ("transductive", "per_image") if s in results]
        for run in results["transductive"]["runs"]:
            errors = ", ".join(f"{100 * results[s]['runs'][run]:.1f}% {s}" for s in scorings)
            print(f"  {run}: error {errors}")
        for s in scorings:
            count, rate = len(results[s]["runs"]), 100 * results[s]["error_rate"]
            print(f"Lake one-shot protocol, {count} runs, {s} scoring: error rate {rate:.2f}%")
    elif "test_accuracy" in results:
        r = results
        print(
            f"{r['algo']} {r['ways']}-way {r['shots']}-shot after {r['steps_trained']} meta-steps: "
            f"test accuracy {100 * r['test_accuracy']:.2f} +- {100 * r['ci95']:.2f}% "
            f"(95% CI, {r['test_tasks']} episodes)"
        )
    else:
        print(f"{results['algo']} {results['shots']}-shot on {results['test_tasks']} test tasks:")
        mse = results["mse"]
        for k in sorted({0, 1, len(mse) - 1}):
            diverged = results["diverged_tasks"][k]
            note = f"  ({diverged} task(s) diverged)" if diverged else ""
            print(
                f"  MSE after {k:2d} step(s): {mse[k]:.3f} +- {results['ci95'][k]:.3f} (95% CI){note}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metax`` command; returns the exit status."""
    missing = missing_modules("train")
    if missing:  # before any work: the base install has the library, not the trainer
        sys.exit(
            f"metax: error: the metax command needs the 'train' extra (missing: "
            f"{', '.join(missing)}); install it with: pip install 'metax-learn[train]'"
        )
    parser = build_parser()
    args = parser.parse_args(argv)
    from metax import cpu_heap

    if args.heap == "resident":
        cpu_heap.keep_cpu_heap_resident()  # before the first JAX computation
    from metax.train import CheckpointError, NonFiniteLossError

    try:
        if args.command == "train":
            from metax.train import train

            config = _config(args, parser)  # checked before waiting for other processes
            _join(args)
            progress = not args.no_progress
            options = {"resume": args.resume, "overwrite": args.overwrite, "progress": progress}
            results = train(config, args.out, **options)
        elif args.command == "eval-lake":
            from metax.train.lake import evaluate_lake

            results = evaluate_lake(args.runs_dir, args.checkpoint, per_image=args.per_image)
        else:
            results = _eval(args)
    except ValueError as e:  # a bad value that passed the parser (config, data, episodes)
        parser.exit(2, f"metax: error: {e}\n")
    except (OSError, CheckpointError, NonFiniteLossError) as e:  # files, checkpoints, divergence
        parser.exit(1, f"metax: error: {e}\n")
    if results.get("process_index", 0) == 0:  # of several processes, the first reports
        _report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
