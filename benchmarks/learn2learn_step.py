"""learn2learn 0.2.0 side of the benchmarks; runs in benchmarks/.venv-learn2learn (PyTorch CPU).

Times learn2learn's MAML meta-step as in its ``examples/vision/maml_omniglot.py``
(per task: ``clone()``, ``adapt()`` per inner step, query loss ``backward()``; then
the averaged gradient and an Adam step) on the same network and shapes as metax:

    python learn2learn_step.py '{"kind": "omniglot", ...}'      # prints one JSON line
    python learn2learn_step.py --meta-grad params.npz grads.npz  # float64 cross-check

Not importable from metax's environment (it needs torch); ``meta_step_speed.py``
starts it as a child process.
"""

import importlib.abc
import importlib.machinery
import json
import resource
import sys
import time
import types


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty ``torchvision`` modules: learn2learn imports it, its MAML code never uses it."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__file__ = None

        def placeholder(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {"__init__": lambda self, *a, **k: None})

        module.__getattr__ = placeholder
        return module

    def exec_module(self, module):
        pass


sys.meta_path.append(_StubFinder())

import learn2learn as l2l  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def conv4(ways: int, features: int = 64) -> nn.Module:
    """metax's Conv-4: 4 x [conv 3x3 pad 1, batch norm (batch statistics), ReLU, max-pool 2] + linear."""
    layers, channels = [], 1
    for _ in range(4):
        layers += [
            nn.Conv2d(channels, features, 3, padding=1),
            nn.BatchNorm2d(features, track_running_stats=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        channels = features
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(features, ways))


def mlp() -> nn.Module:
    """The sinusoid MLP 1-40-40-1 with ReLU."""
    return nn.Sequential(
        nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)
    )


def make_model(w: dict) -> tuple[nn.Module, callable]:
    if w["kind"] == "omniglot":
        return conv4(w["ways"]), nn.CrossEntropyLoss()
    return mlp(), nn.MSELoss()


def random_batch(w: dict, generator: torch.Generator) -> list:
    """One meta-batch of random tasks with the workload's shapes."""
    tasks = []
    for _ in range(w["meta_batch"]):
        if w["kind"] == "omniglot":
            n_s, n_q = w["ways"] * w["shots"], w["ways"] * w["queries"]
            xs = torch.rand(n_s, 1, 28, 28, generator=generator)
            xq = torch.rand(n_q, 1, 28, 28, generator=generator)
            ys = torch.arange(w["ways"]).repeat_interleave(w["shots"])
            yq = torch.arange(w["ways"]).repeat_interleave(w["queries"])
        else:
            xs = torch.rand(w["shots"], 1, generator=generator) * 10 - 5
            xq = torch.rand(w["queries"], 1, generator=generator) * 10 - 5
            ys, yq = torch.sin(xs), torch.sin(xq)
        tasks.append((xs, ys, xq, yq))
    return tasks


def meta_gradient(maml: l2l.algorithms.MAML, loss_fn, tasks: list, inner_steps: int) -> float:
    """learn2learn's meta-batch loop; leaves the mean meta-gradient in ``.grad``."""
    total = 0.0
    for xs, ys, xq, yq in tasks:
        learner = maml.clone()
        for _ in range(inner_steps):
            learner.adapt(loss_fn(learner(xs), ys))
        query_loss = loss_fn(learner(xq), yq)
        query_loss.backward()
        total += query_loss.item()
    for p in maml.parameters():
        p.grad.data.mul_(1.0 / len(tasks))
    return total / len(tasks)


def time_steps(w: dict) -> dict:
    torch.set_num_threads(w["threads"])
    torch.manual_seed(0)
    model, loss_fn = make_model(w)
    maml = l2l.algorithms.MAML(model, lr=w["inner_lr"], first_order=w["first_order"])
    opt = torch.optim.Adam(maml.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(w, generator) for _ in range(2)]
    times = []
    for i in range(w["warmup"] + w["repeats"]):
        t0 = time.perf_counter()
        opt.zero_grad()
        meta_gradient(maml, loss_fn, batches[i % 2], w["inner_steps"])
        opt.step()
        times.append(time.perf_counter() - t0)
    return {
        "impl": "learn2learn",
        "step_ms": [1000 * t for t in times[w["warmup"] :]],
        "first_step_ms": 1000 * times[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {"torch": torch.__version__, "learn2learn": l2l.__version__},
    }


def cross_check(params_path: str, out_path: str) -> None:
    """Meta-gradient in float64 on metax's weights and tasks (written by metax)."""
    torch.set_default_dtype(torch.float64)
    data = np.load(params_path)
    w = json.loads(str(data["workload"]))
    model, loss_fn = make_model(w)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(data["param/" + name]))
    maml = l2l.algorithms.MAML(model, lr=w["inner_lr"], first_order=w["first_order"])
    tasks = []
    for t in range(data["support_x"].shape[0]):
        tasks.append(
            tuple(
                torch.from_numpy(data[k][t])
                for k in ("support_x", "support_y", "query_x", "query_y")
            )
        )
    loss = meta_gradient(maml, loss_fn, tasks, w["inner_steps"])
    grads = {"grad/" + n: p.grad.numpy() for n, p in maml.module.named_parameters()}
    np.savez(out_path, loss=loss, **grads)


if __name__ == "__main__":
    if sys.argv[1] == "--meta-grad":
        cross_check(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(time_steps(json.loads(sys.argv[1]))))
