"""Data-parallel meta-steps on several host devices (a subprocess: XLA's device count is fixed at start)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# XLA:CPU runs the host devices' programs on one thread pool sized by the cores; its in-process
# all-reduce waits for every device, so more devices than cores can starve it (measured: a 4-device
# step on 2 cores timed out once in ~10 runs). Host-device tests use no more devices than cores;
# 4 and 8 were checked by hand on this machine (benchmarks/RESULTS.md).
DEVICES = max(2, min(8, os.cpu_count() or 1))
MESHES = [n for n in (1, 2, 4, 8) if n <= DEVICES]


def on_host_devices_check(what: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.parallel_check", what],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_sharded_meta_steps_equal_one_device_exactly():
    result = on_host_devices_check("mlp")
    assert result.returncode == 0, result.stderr[-3000:]
    meshes = ", ".join(map(str, MESHES))
    assert f"maml: {meshes} devices equal one device" in result.stdout
    assert f"maml++: {meshes} devices equal one device" in result.stdout
    assert result.stdout.count("3 tasks over 2 devices: named") == 2


def test_sharded_stateful_model_equals_one_device():
    result = on_host_devices_check("conv4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{DEVICES} devices equal one device" in result.stdout


def test_bad_device_requests_are_named():
    import metax.parallel as par

    with pytest.raises(ValueError, match=r"asked for 9 devices, but this process sees 1"):
        par.task_mesh(9)
    with pytest.raises(ValueError, match=r"asked for 0 devices"):
        par.task_mesh(0)


def test_a_mesh_or_axis_name_the_step_cannot_use_is_named():
    import jax
    import optax

    import metax
    import metax.parallel as par

    learner = metax.maml(
        lambda p, b: ((p * b["x"]) ** 2).mean(), inner_opt=optax.sgd(0.1), num_steps=1
    )
    mesh = jax.make_mesh((1, 1), ("tasks", "model"))
    with pytest.raises(ValueError, match=r"one-axis mesh; this one has axes \('tasks', 'model'\)"):
        par.data_parallel(learner, optax.sgd(0.1), mesh)
    step = metax.meta_step(learner, optax.sgd(0.1), axis_name="hosts")  # no mesh binds "hosts"
    tasks = metax.Task(support={"x": jax.numpy.ones((2, 3))}, query={"x": jax.numpy.ones((2, 3))})
    mp = learner.init(jax.numpy.ones(()))
    with pytest.raises(NameError, match="unbound axis name: hosts"):
        jax.jit(step)(mp, optax.sgd(0.1).init(mp), tasks)


def metax_on_host_devices(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}"}
    return subprocess.run(
        [sys.executable, "-m", "metax.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


def logged_losses(run: Path) -> list[float]:
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


NPZ = ROOT.parent / "shared" / "data" / "omniglot" / "omniglot_105.npz"


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(
            [
                "omniglot",
                "--data",
                NPZ,
                "--algo",
                "maml++",
                "--bn-policy",
                "per_step",
                "--inner-steps",
                "2",
                "--meta-batch",
                "4",
                "--features",
                "8",
                "--steps",
                "6",
                "--log-every",
                "2",
                "--checkpoint-every",
                "3",
                "--val-tasks",
                "4",
            ],
            marks=pytest.mark.skipif(not NPZ.is_file(), reason=f"real Omniglot not found at {NPZ}"),
        ),
    ],
    ids=["omniglot-maml++"],
)
def test_cli_on_several_devices_logs_the_losses_of_one_device(tmp_path, family):
    common = ["train", *family, "--test-tasks", "20", "--eval-every", "0", "--no-progress"]
    runs = {}
    for devices in (1, DEVICES):
        runs[devices] = tmp_path / f"d{devices}"
        result = metax_on_host_devices(*common, "--devices", devices, "--out", runs[devices])
        assert result.returncode == 0, result.stderr[-2000:]
    one, many = logged_losses(runs[1]), logged_losses(runs[DEVICES])
    assert len(one) == len(many) >= 3
    for a, b in zip(one, many, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (one, many)


def test_cli_names_a_meta_batch_that_does_not_divide_and_too_many_devices(tmp_path):
    result = metax_on_host_devices(
        "train", "sinusoid", "--devices", 3, "--meta-batch", 8, "--out", tmp_path / "a"
    )
    assert result.returncode == 2 and "meta_batch=8 must divide over devices=3" in result.stderr
    result = metax_on_host_devices(
        "train", "sinusoid", "--devices", 16, "--meta-batch", 16, "--out", tmp_path / "b"
    )
    assert (
        result.returncode == 2
        and f"asked for 16 devices, but this process sees {DEVICES}" in result.stderr
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
