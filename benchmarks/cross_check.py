"""Fairness check: metax and learn2learn compute the same meta-gradient (float64).

Same weights, same tasks, same network; the second-order (and first-order) MAML
meta-gradient of each side is compared leaf by leaf. Run through
``meta_step_speed.py --cross-check`` (which builds the learn2learn environment).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import jax
import numpy as np


def _torch_names(kind: str) -> dict[str, tuple[tuple[str, str], callable]]:
    """torch parameter name -> (flax path, layout transform)."""
    if kind == "sinusoid":
        return {
            f"{2 * i}.{leaf}": (
                (f"Dense_{i}", flax_leaf),
                (lambda a: a.T) if leaf == "weight" else (lambda a: a),
            )
            for i in range(3)
            for leaf, flax_leaf in (("weight", "kernel"), ("bias", "bias"))
        }
    names = {}
    for i in range(4):
        names[f"{4 * i}.weight"] = ((f"Conv3x3_{i}", "kernel"), lambda a: a.transpose(3, 2, 0, 1))
        names[f"{4 * i}.bias"] = ((f"Conv3x3_{i}", "bias"), lambda a: a)
        names[f"{4 * i + 1}.weight"] = ((f"StepBatchNorm_{i}", "scale"), lambda a: a)
        names[f"{4 * i + 1}.bias"] = ((f"StepBatchNorm_{i}", "bias"), lambda a: a)
    names["17.weight"] = (("Dense_0", "kernel"), lambda a: a.T)
    names["17.bias"] = (("Dense_0", "bias"), lambda a: a)
    return names


def metax_meta_gradient(w: dict):
    """metax's meta-gradient, loss, params and tasks for workload ``w`` in float64."""
    import jax.numpy as jnp
    import optax
    from tasks import metax_model, random_tasks

    import metax

    params, loss_fn = metax_model(w, jax.random.key(3))
    tasks = random_tasks(w, 3)  # float64: cross_check enables x64 first
    learner = metax.maml(
        loss_fn,
        inner_opt=optax.sgd(w["inner_lr"]),
        num_steps=w["inner_steps"],
        first_order=w["first_order"],
    )
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)  # Flax initialises float32
    mp = learner.init(params)

    def mean_loss(mp):
        return jax.vmap(lambda task: learner.loss(mp, task)[0])(tasks).mean()

    loss, grads = jax.value_and_grad(mean_loss)(mp)
    return float(loss), grads.params, params, tasks


def cross_check(l2l_python: Path, l2l_script: Path, cases: list[dict] | None = None) -> None:
    """Prints the largest relative meta-gradient difference for each case; raises if > 1e-8."""
    jax.config.update("jax_enable_x64", True)
    cases = cases or [
        {
            "kind": "sinusoid",
            "shots": 10,
            "queries": 10,
            "inner_steps": 2,
            "meta_batch": 3,
            "inner_lr": 0.01,
        },
        {
            "kind": "omniglot",
            "ways": 5,
            "shots": 1,
            "queries": 2,
            "inner_steps": 2,
            "meta_batch": 2,
            "inner_lr": 0.4,
        },
    ]
    worst = 0.0
    for case in cases:
        for first_order in (False, True):
            w = {**case, "first_order": first_order}
            loss, grads, params, tasks = metax_meta_gradient(w)
            names = _torch_names(w["kind"])
            arrays = {"workload": json.dumps(w)}
            for torch_name, ((module, leaf), to_torch) in names.items():
                arrays["param/" + torch_name] = np.ascontiguousarray(
                    to_torch(np.asarray(params[module][leaf]))
                )
            to_nchw = (
                (lambda a: a.transpose(0, 1, 4, 2, 3)) if w["kind"] == "omniglot" else (lambda a: a)
            )
            arrays["support_x"] = to_nchw(np.asarray(tasks.support["x"]))
            arrays["query_x"] = to_nchw(np.asarray(tasks.query["x"]))
            arrays["support_y"] = np.asarray(tasks.support["y"])
            arrays["query_y"] = np.asarray(tasks.query["y"])
            with tempfile.TemporaryDirectory() as tmp:
                np.savez(Path(tmp) / "in.npz", **arrays)
                subprocess.run(
                    [
                        str(l2l_python),
                        str(l2l_script),
                        "--meta-grad",
                        f"{tmp}/in.npz",
                        f"{tmp}/out.npz",
                    ],
                    check=True,
                    capture_output=True,
                )
                out = dict(np.load(Path(tmp) / "out.npz"))
            # Differences relative to the largest meta-gradient entry: leaves whose true
            # gradient is 0 (convolution biases before batch norm) hold only rounding noise.
            scale = max(float(np.abs(v).max()) for k, v in out.items() if k.startswith("grad/"))
            rel = abs(float(out["loss"]) - loss) / abs(loss)
            for torch_name, ((module, leaf), to_torch) in names.items():
                ours = np.ascontiguousarray(to_torch(np.asarray(grads[module][leaf])))
                rel = max(rel, float(np.abs(ours - out["grad/" + torch_name]).max()) / scale)
            order = "first" if first_order else "second"
            print(
                f"{w['kind']:9s} {order} order: max relative difference {rel:.1e} "
                f"(query loss: metax {loss:.9f}, learn2learn {float(out['loss']):.9f})"
            )
            worst = max(worst, rel)
    if worst > 1e-8:
        raise SystemExit(f"meta-gradients differ: {worst:.1e}")
