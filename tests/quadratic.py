"""Quadratic tasks with closed-form meta-gradients (the test oracle).

A task's loss is ``0.5 (z - c)^T A (z - c)`` with ``z = concat(params["a"], params["b"])``;
support and query have their own ``A`` and ``c``. Gradient descent on it is linear, so
every meta-gradient has a closed form in numpy float64.
"""

import jax.numpy as jnp
import numpy as np

import metax

SIZES = {"a": 2, "b": 3}
DIM = sum(SIZES.values())


def flatten(params):
    return jnp.concatenate([params["a"], params["b"]])


def unflatten(z):
    return {"a": z[: SIZES["a"]], "b": z[SIZES["a"] :]}


def loss(params, batch):
    d = flatten(params) - batch["c"]
    return 0.5 * d @ batch["A"] @ d


def random_spd(rng, scale=1.0):
    m = rng.normal(size=(DIM, DIM))
    return scale * (m @ m.T / DIM + 0.5 * np.eye(DIM))


def make_task(rng):
    support = {"A": random_spd(rng), "c": rng.normal(size=DIM)}
    query = {"A": random_spd(rng), "c": rng.normal(size=DIM)}
    return metax.Task(support=support, query=query)


def projector(name):
    """Diagonal 0/1 matrix selecting the coordinates of leaf ``name`` in ``z``."""
    mask = np.zeros(DIM)
    start = 0 if name == "a" else SIZES["a"]
    mask[start : start + SIZES[name]] = 1.0
    return np.diag(mask)


def lslr_closed_form(z0, rates, task, *, first_order=False):
    """Query loss gradient w.r.t. z0 and every per-step per-leaf rate, for SGD with
    per-leaf step sizes ``rates[name][i]`` (plain MAML: equal rates)."""
    A_s, c_s = np.asarray(task.support["A"]), np.asarray(task.support["c"])
    A_q, c_q = np.asarray(task.query["A"]), np.asarray(task.query["c"])
    num_steps = len(rates["a"])
    I = np.eye(DIM)
    zs, Ms = [np.asarray(z0)], []
    for i in range(num_steps):
        D = sum(rates[n][i] * projector(n) for n in SIZES)
        Ms.append(I - D @ A_s)
        zs.append(zs[-1] - D @ A_s @ (zs[-1] - c_s))
    g = A_q @ (zs[-1] - c_q)  # query gradient at the adapted point

    def product(lo, hi):  # M_{hi-1} ... M_{lo}
        out = I
        for M in Ms[lo:hi]:
            out = M @ out
        return out

    grad_z0 = g if first_order else product(0, num_steps).T @ g
    grad_rates = {}
    for n in SIZES:
        grad_rates[n] = np.array(
            [
                g
                @ (I if first_order else product(i + 1, num_steps))
                @ (-projector(n) @ A_s @ (zs[i] - c_s))
                for i in range(num_steps)
            ]
        )
    return grad_z0, grad_rates
