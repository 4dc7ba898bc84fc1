"""Several processes (jax.distributed, Gloo collectives on CPU) run `metax train` as one process does.

Each process is a `metax` command with its own host devices; the meta-batch is sharded
over the devices of all of them. On a machine with fewer than 4 cores each process
has one device (two processes x one device against one process x two devices).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
LOCAL = 2 if (os.cpu_count() or 1) >= 4 else 1  # host devices per process
SINUSOID = ["train", "sinusoid", "--shots", "5", "--meta-batch", "8", "--hidden", "16,16"]
SINUSOID += ["--test-tasks", "20", "--eval-inner-steps", "2", "--val-tasks", "20", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, *, devices: int, process: tuple[int, int, int] | None = None):
    """A `metax` process with ``devices`` host devices; ``process``: (port, count, id)."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, "-m", "metax.cli", *map(str, args)]
    if process is not None:
        port, count, index = process
        command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", count]
        command += ["--process-id", index, "--join-timeout", 60]
    command = list(map(str, command))
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def two_processes(args):
    port = free_port()
    return [launch(args, devices=LOCAL, process=(port, 2, i)) for i in range(2)]


def finish(procs, timeout=600):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return outs


def final_params(run: Path):
    from metax.train import load

    _, state = load(run)
    return int(state.step), jax.tree.map(np.asarray, state.meta_params)


def losses(run: Path):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_two_processes_train_as_one_process_with_as_many_devices(tmp_path):
    args = [*SINUSOID, "--steps", 40, "--log-every", 10, "--eval-every", 20, "--devices", 2 * LOCAL]
    procs = two_processes([*args, "--out", tmp_path / "two"])
    (out0, _), (out1, _) = finish(procs)
    finish([launch([*args, "--out", tmp_path / "one"], devices=2 * LOCAL)])
    assert "MSE after  2 step(s)" in out0 and "MSE" not in out1  # process 0 reports, once
    one, two = final_params(tmp_path / "one"), final_params(tmp_path / "two")
    assert one[0] == two[0] == 40
    tol = 0 if LOCAL == 1 else 1e-6  # two summands add the same in any order
    for a, b in zip(jax.tree.leaves(one[1]), jax.tree.leaves(two[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(losses(tmp_path / "one"), losses(tmp_path / "two"), rtol=1e-6)
    records = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == len(set(records)) == 4 + 2  # written once: 4 losses, 2 validations


def test_a_killed_two_process_run_resumes_bit_for_bit(tmp_path):
    args = [*SINUSOID, "--steps", 1000, "--log-every", 100, "--eval-every", 0]
    args += ["--checkpoint-every", 100, "--devices", 2 * LOCAL]
    procs = two_processes([*args, "--out", tmp_path / "killed"])
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    killed_at = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert killed_at < 1000, "the run ended before it was killed"
    finish(two_processes([*args, "--out", tmp_path / "killed", "--resume"]))
    finish(two_processes([*args, "--out", tmp_path / "whole"]))
    resumed, whole = final_params(tmp_path / "killed"), final_params(tmp_path / "whole")
    assert resumed[0] == whole[0] == 1000
    for a, b in zip(jax.tree.leaves(resumed[1]), jax.tree.leaves(whole[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--process-id", "2", "--num-processes", "2"], r"process_id=2 is out of range for 2"),
        (["--num-processes", "2"], "--coordinator, --num-processes and --process-id go together"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (  # a bad config is named before waiting for the other processes (nobody listens)
            "--devices 2 --meta-batch 5 --coordinator 127.0.0.1:1 --num-processes 2 "
            "--process-id 1 --join-timeout 30".split(),
            "meta_batch=5 must divide over devices=2",
        ),
    ],
)
def test_bad_process_flags_are_named(tmp_path, flags, match):
    if "--coordinator" not in flags and "out of range" in match:
        flags = [*flags, "--coordinator", f"127.0.0.1:{free_port()}"]
    args = [*SINUSOID, "--steps", 2, "--out", tmp_path / "run", *flags]
    result = subprocess.run(
        [sys.executable, "-m", "metax.cli", *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 2 and re.search(match, result.stderr), result.stderr
    assert not (tmp_path / "run").exists()


def test_an_unreachable_coordinator_fails_in_bounded_time_naming_it(tmp_path):
    port = free_port()  # nobody listens there
    args = [*SINUSOID, "--steps", 2, "--out", tmp_path / "run", "--coordinator"]
    args += [f"127.0.0.1:{port}", "--num-processes", 2, "--process-id", 1, "--join-timeout", 5]
    tic = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "metax.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - tic < 60
    assert result.returncode == 1, result.stderr
    assert f"could not join the run coordinated at 127.0.0.1:{port} within 5 s" in result.stderr
    assert not (tmp_path / "run").exists()
