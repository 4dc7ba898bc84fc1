"""The metax command: kill and resume, bad input, never overwriting a run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from metax.train import load

FAST = [
    "--meta-batch",
    "5",
    "--hidden",
    "16,16",
    "--test-tasks",
    "50",
    "--eval-every",
    "0",
    "--log-every",
    "500",
    "--no-progress",
]


def metax(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "metax.cli", *map(str, args)],
        capture_output=True,
        text=True,
        **kwargs,
    )


def checkpoint_steps(run: Path) -> list[int]:
    ckpt = run / "checkpoints"
    if not ckpt.exists():
        return []
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    steps = 12_000
    args = ["train", "sinusoid", "--steps", steps, "--checkpoint-every", 1_000, *FAST]
    reference = tmp_path / "reference"
    assert metax(*args, "--out", reference).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metax.cli", *map(str, args), "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not [s for s in checkpoint_steps(killed) if s >= 2_000]:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached = max(checkpoint_steps(killed))
    assert 2_000 <= reached < steps, f"kill came too late or too early (checkpoint {reached})"
    assert not (killed / "results.json").exists()

    resumed = metax(*args, "--out", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _, want = load(reference)
    _, got = load(killed)
    jax.tree.map(np.testing.assert_array_equal, want.meta_params, got.meta_params)  # bit for bit

    def logged(run):
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [(r["step"], r["loss"]) for r in records]

    assert logged(killed) == logged(reference)  # the same steps and losses, none twice


def test_a_resumed_run_changes_what_flags_say_and_only_what_it_may(tmp_path):
    """Flags given on --resume change the run (steps, log cadence); flags not given keep the
    run's values, not the defaults; a setting that changes the meta-steps is refused, named."""
    run = tmp_path / "run"
    first = metax("train", "sinusoid", "--steps", 200, "--chunk-size", 5, *FAST, "--out", run)
    assert first.returncode == 0, first.stderr
    saved = (run / "config.json").read_text()
    bad = metax("train", "sinusoid", "--chunk-size", "two", "--out", run)
    assert bad.returncode == 2 and "expected an integer or none, got 'two'" in bad.stderr

    refused = metax(
        "train", "sinusoid", "--inner-lr", 0.1, "--steps", 300, "--out", run, "--resume"
    )
    assert refused.returncode == 2
    assert "cannot resume with inner_lr=0.1 (run: 0.01)" in refused.stderr
    assert (run / "config.json").read_text() == saved and checkpoint_steps(run) == [200]
    other = metax("train", "omniglot", "--out", run, "--resume")
    assert (
        other.returncode == 2
        and f"{run} holds a sinusoid run: resume it with metax train sinusoid" in other.stderr
    )

    extended = metax(
        "train", "sinusoid", "--steps", 300, "--log-every", 50, "--chunk-size", "none",
        "--out", run, "--resume", "--no-progress",
    )  # fmt: skip
    assert extended.returncode == 0, extended.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["steps"], config["log_every"], config["meta_batch"]) == (300, 50, 5)
    assert config["chunk_size"] is None  # a layout that --resume may change, back to unchunked
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    assert [r["step"] for r in records if "loss" in r] == [200, 250, 300]


def test_a_run_resumes_on_more_devices_where_one_device_would_have_ended(tmp_path):
    """Trained on one device, resumed on two: the same tasks, so the same parameters as an
    uninterrupted one-device run, up to the order of the sums (the step is split by task)."""
    args = ["train", "sinusoid", *FAST, "--meta-batch", 4]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    whole, moved = tmp_path / "whole", tmp_path / "moved"
    assert metax(*args, "--steps", 300, "--out", whole).returncode == 0
    assert metax(*args, "--steps", 200, "--out", moved).returncode == 0
    resumed = metax(*args, "--steps", 300, "--devices", 2, "--out", moved, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((moved / "config.json").read_text())["devices"] == 2
    (_, want), (run, got) = load(whole), load(moved)
    assert run.config.devices == 1  # restored for evaluation on one device
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        want.meta_params,
        got.meta_params,
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--shots", "0"], "--shots: must be >= 1, got 0"),
        (["--steps", "-5"], "--steps: must be >= 1, got -5"),
        (["--inner-steps", "-1"], "--inner-steps: must be >= 1, got -1"),
        (["--algo", "magic"], "invalid choice: 'magic'"),
        (["--inner-lr", "nan"], "--inner-lr: must be a positive finite number, got nan"),
        (["--cg-damping", "-1"], "--cg-damping: must be a finite number >= 0, got -1"),
        (["--hidden", "40,x"], "expected comma-separated widths"),
        (["--test-tasks", "1"], "--test-tasks: must be >= 2 (a confidence interval needs two)"),
    ],
)
def test_bad_flags_exit_non_zero_naming_the_value(tmp_path, flags, message):
    result = metax("train", "sinusoid", "--out", tmp_path / "run", *flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command", [["train", "sinusoid"], ["train", "omniglot"], ["eval"], ["eval-lake"]]
)
def test_every_help_prints_every_flag(command, capsys):
    import dataclasses

    from metax.cli import build_parser
    from metax.train import FAMILIES

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    if command[0] == "train":  # one flag per config field, with its docstring ("1% of outer_lr")
        for f in dataclasses.fields(FAMILIES[command[1]].config_class):
            assert "--" + f.name.replace("_", "-") in shown
        assert "(to 1% of outer_lr" in " ".join(shown.split())


def test_fractional_dampings_are_numbers_on_the_command_line():
    from metax.cli import build_parser

    flags = ["--algo", "imaml", "--cg-damping", "0.1", "--lam-damping", "0.5", "--out", "x"]
    args = build_parser().parse_args(["train", "sinusoid", *flags])
    assert (args.cg_damping, args.lam_damping) == (0.1, 0.5)


def test_unwritable_out_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = metax("train", "sinusoid", "--steps", "10", "--out", blocker / "run", *FAST)
    assert result.returncode == 1
    assert f"cannot write to output directory {blocker / 'run'}" in result.stderr


def test_existing_output_is_never_silently_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    result = metax("train", "sinusoid", "--steps", "10", "--out", run, *FAST)
    assert result.returncode == 1
    assert "already exists and is not empty" in result.stderr and "--overwrite" in result.stderr
    result = metax("train", "sinusoid", "--steps", "10", "--out", run, "--overwrite", *FAST)
    assert result.returncode == 1 and f"--overwrite: {run} holds no metax run" in result.stderr
    assert (run / "precious.txt").read_text() == "keep me"


def test_eval_of_missing_or_corrupt_checkpoint(tmp_path):
    result = metax("eval", tmp_path / "nothing")
    assert result.returncode == 1 and "no run configuration" in result.stderr

    run = tmp_path / "run"
    assert (
        metax(
            "train", "sinusoid", "--steps", "20", "--checkpoint-every", "10", "--out", run, *FAST
        ).returncode
        == 0
    )
    figure = (run / "fits.png").stat().st_mtime_ns
    ok = metax("eval", run, "--test-tasks", "20")
    assert ok.returncode == 0 and "MSE after  1 step(s)" in ok.stdout
    assert json.loads((run / "eval.json").read_text())["test_tasks"] == 20
    assert (run / "fits.png").stat().st_mtime_ns == figure  # eval adds files, rewrites none
    bad = metax("eval", run, "--test-tasks", "1")
    assert bad.returncode == 2 and "--test-tasks: must be >= 2" in bad.stderr, bad.stderr

    # an older checkpoint, with another protocol; a step that is not kept is named
    ok = metax("eval", run, "--step", "10", "--eval-queries", "7", "--test-tasks", "20")
    assert ok.returncode == 0, ok.stderr
    result = json.loads((run / "eval.json").read_text())
    assert (result["steps_trained"], result["eval_queries"]) == (10, 7)
    history = [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]
    assert [(r["steps_trained"], r["eval_queries"]) for r in history] == [(20, 100), (10, 7)]
    result = metax("eval", run, "--step", "15")
    assert result.returncode == 1
    assert "no checkpoint at step 15" in result.stderr and "[10, 20]" in result.stderr

    # a run written by metax 0.1 (no family, older field names): told how to convert, then loads
    config = json.loads((run / "config.json").read_text())
    old = {k: v for k, v in config.items() if k != "family"}
    old["eval_tasks"], old["eval_steps"] = old.pop("test_tasks"), old.pop("eval_inner_steps")
    (run / "config.json").write_text(json.dumps(old))
    result = metax("eval", run, "--test-tasks", "10")
    assert result.returncode == 2
    assert "add \"family\" (one of 'sinusoid', 'omniglot')" in result.stderr, result.stderr
    (run / "config.json").write_text(json.dumps({"family": "sinusoid", **old}))
    result = metax("eval", run, "--test-tasks", "10")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "eval.json").read_text())["steps_trained"] == 20

    for path in (run / "checkpoints").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    result = metax("eval", run)
    assert result.returncode == 1
    assert "cannot read the checkpoint at step 20" in result.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((run / "config.json").read_text())
    result = metax("eval", empty)
    assert result.returncode == 1 and "no checkpoint found" in result.stderr


def test_diverging_training_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = metax(
        "train",
        "sinusoid",
        "--steps",
        "2000",
        "--inner-lr",
        "1e30",
        "--log-every",
        "10",
        "--checkpoint-every",
        "10",
        "--out",
        run,
        *FAST[:-5],
        "--no-progress",
    )
    assert result.returncode == 1
    assert "meta-training loss is nan at step 10" in result.stderr, result.stderr
    assert "the last good checkpoint (step None)" in result.stderr


@pytest.mark.parametrize("heap, calls", [("resident", 1), ("default", 0)])
def test_heap_option_decides_whether_the_cpu_heap_is_kept_resident(
    tmp_path, monkeypatch, capsys, heap, calls
):
    from metax import cli, cpu_heap

    seen = []
    monkeypatch.setattr(cpu_heap, "keep_cpu_heap_resident", lambda: seen.append(True))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--heap", heap, "eval", str(tmp_path / "nothing")])
    assert exit_.value.code == 1 and "no run configuration" in capsys.readouterr().err
    assert len(seen) == calls
    with pytest.raises(SystemExit):
        cli.main(["--heap", "huge", "eval", str(tmp_path)])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
