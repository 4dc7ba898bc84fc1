"""Data-parallel meta-steps on several host devices (a subprocess: XLA's device count is fixed at start)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def on_eight_devices(what: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
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
    result = on_eight_devices("mlp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "maml: 1, 2, 4, 8 devices equal one device" in result.stdout
    assert "maml++: 1, 2, 4, 8 devices equal one device" in result.stdout


def test_sharded_stateful_model_equals_one_device():
    result = on_eight_devices("conv4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 devices equal one device" in result.stdout


def test_bad_device_requests_are_named():
    import jax
    import optax

    import metax
    import metax.parallel as par

    with pytest.raises(ValueError, match=r"asked for 9 devices, but this process sees 1"):
        par.task_mesh(9)
    learner = metax.maml(lambda w, b: ((w - b) ** 2).mean(), inner_opt=optax.sgd(0.1), num_steps=1)
    mesh = jax.make_mesh((1,), ("tasks",))
    step = par.data_parallel(learner, optax.sgd(0.1), mesh)
    del step  # one device always divides; the 3-over-2 case runs in tests/parallel_check.py
