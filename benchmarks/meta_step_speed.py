"""Meta-step speed and memory: metax, a minimal hand-written JAX MAML, and learn2learn.

Each configuration runs in its own fresh process (so compile caches and peak
resident memory are its own), in alternating pairs metax / reference / learn2learn,
and the ratio is taken within each pair. Workloads (issue 5):

  A   Omniglot 5-way 1-shot, 15 queries/class, Conv-4 (64 filters), 5 inner steps,
      meta-batch 32, second and first order
  B   sinusoid, MLP 1-40-40-1, K=10, 1 inner step, meta-batch 25, second order
  C   A, second order, 1/5/10/20 inner steps, with and without remat, and first order
  D   Finn et al.'s Omniglot training setting: 1 inner step, 1 query/class, meta-batch 32

    .venv/bin/python benchmarks/meta_step_speed.py --workloads B A D [--pairs 3]
    .venv/bin/python benchmarks/meta_step_speed.py --workloads D --impls metax reference
    .venv/bin/python benchmarks/meta_step_speed.py --workloads C --impls metax --plot
    .venv/bin/python benchmarks/meta_step_speed.py --cross-check
    .venv/bin/python benchmarks/meta_step_speed.py --workloads D --impls metax metax:pooling=reduce_window

A variant ``metax:key=value`` overrides one workload field for metax in the same
pairs: ``conv=patches_autodiff``, ``pooling=reduce_window``, ``chunk_size=1``,
``resident_heap=false`` (no ``metax.cpu_heap.keep_cpu_heap_resident()``).

learn2learn runs in ``benchmarks/.venv-learn2learn`` (built on first use by
``learn2learn_env.sh``). Results are appended as JSON lines to
``benchmarks/results/meta_step_speed.jsonl`` and printed as Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from tasks import metax_model, random_tasks

HERE = Path(__file__).resolve().parent
L2L_PYTHON = HERE / ".venv-learn2learn" / "bin" / "python"
RESULTS = HERE / "results" / "meta_step_speed.jsonl"

BASE = {
    "threads": 2,
    "warmup": 2,
    "repeats": 5,
    "remat": False,
    "first_order": False,
    "chunk_size": None,
    "conv": "auto",
    "pooling": "select",
    "resident_heap": True,  # metax.cpu_heap.keep_cpu_heap_resident() in the JAX children
}
OMNIGLOT_A = {"kind": "omniglot", "ways": 5, "shots": 1, "queries": 15, "inner_steps": 5,
              "meta_batch": 32, "inner_lr": 0.4}  # fmt: skip
SINUSOID_B = {"kind": "sinusoid", "shots": 10, "queries": 10, "inner_steps": 1, "meta_batch": 25,
              "inner_lr": 0.01, "repeats": 200, "warmup": 10}  # fmt: skip


def workloads(names: list[str]) -> list[dict]:
    """The configurations of the named workloads, each a dict of shapes and options."""
    out = []
    for name in names:
        if name == "A":  # metax in chunks of 4 tasks (bounded memory; the reference is unchunked)
            out += [
                {**BASE, **OMNIGLOT_A, "name": "A", "first_order": fo, "chunk_size": 4}
                for fo in (False, True)
            ]
        elif name == "B":
            out.append({**BASE, **SINUSOID_B, "name": "B"})
        elif name == "C":
            for steps in (1, 5, 10, 20):
                reps = {"repeats": 3, "warmup": 1} if steps >= 10 else {}
                for remat, fo in ((False, False), (True, False), (False, True)):
                    out.append({**BASE, **OMNIGLOT_A, **reps, "name": "C", "inner_steps": steps,
                                "remat": remat, "first_order": fo, "chunk_size": 4})  # fmt: skip
        elif name == "D":
            out.append({**BASE, **OMNIGLOT_A, "name": "D", "inner_steps": 1, "queries": 1,
                        "repeats": 10})  # fmt: skip
        else:
            raise SystemExit(f"unknown workload {name!r}; choose from A B C D.")
    return out


# ---------------------------------------------------------------- JAX children


def _jax_setup(resident_heap: bool = True):
    import metax.cpu_heap

    if resident_heap:
        metax.cpu_heap.keep_cpu_heap_resident()
    import jax

    return jax


def metax_step(w: dict):
    """metax: Flax model, ``metax.maml`` with an Optax SGD inner loop, ``metax.meta_step``."""
    import jax
    import optax

    import metax

    params, loss_fn = metax_model(w, jax.random.key(0))
    learner = metax.maml(
        loss_fn,
        inner_opt=optax.sgd(w["inner_lr"]),
        num_steps=w["inner_steps"],
        first_order=w["first_order"],
        remat=w["remat"],
    )
    outer = optax.adam(1e-3)
    step = metax.meta_step(learner, outer, chunk_size=w["chunk_size"])
    meta_params = learner.init(params)
    return (lambda mp, o, tasks: step(mp, o, tasks)[:2]), meta_params, outer.init(meta_params)


def reference_step(w: dict, *, unroll: bool = False):
    """A minimal hand-written JAX MAML: plain functions, vmap, lax.scan, one jit.

    The same kernels as metax's Conv-4 (the pure functions ``conv3x3_patches`` and
    ``max_pool_2x2``; batch norm with batch statistics written out), but no Flax, no
    Optax inner optimizer, no ``MetaLearner``, no ``meta_step``: the floor the
    library's abstractions are measured against.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from metax.nn import conv3x3_patches as conv
    from metax.nn import max_pool_2x2 as pool

    def net(p, x):
        if w["kind"] != "omniglot":
            h = jax.nn.relu(x @ p["w0"] + p["b0"])
            h = jax.nn.relu(h @ p["w1"] + p["b1"])
            return h @ p["w2"] + p["b2"]
        for i in range(4):
            h = conv(x, p[f"k{i}"]) + p[f"c{i}"]
            mean, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
            h = (h - mean) * jax.lax.rsqrt(var + 1e-5) * p[f"g{i}"] + p[f"be{i}"]
            x = pool(jax.nn.relu(h))
        return x.reshape(x.shape[0], -1) @ p["w"] + p["b"]

    def loss(p, x, y):
        out = net(p, x)
        if w["kind"] == "omniglot":
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], 1))
        return jnp.mean((out - y) ** 2)

    def task_loss(p, task):
        def inner(q, _):
            g = jax.grad(loss)(q, task.support["x"], task.support["y"])
            if w["first_order"]:
                g = jax.lax.stop_gradient(g)
            return jax.tree.map(lambda a, b: a - w["inner_lr"] * b, q, g), None

        if w["remat"]:
            inner = jax.checkpoint(inner)
        adapted, _ = jax.lax.scan(inner, p, None, length=w["inner_steps"], unroll=unroll)
        return loss(adapted, task.query["x"], task.query["y"])

    outer = optax.adam(1e-3)

    def step(p, o, tasks):
        g = jax.grad(lambda q: jax.vmap(task_loss, (None, 0))(q, tasks).mean())(p)
        updates, o = outer.update(g, o, p)
        return optax.apply_updates(p, updates), o

    key = iter(jax.random.split(jax.random.key(0), 20))
    glorot = jax.nn.initializers.glorot_uniform()
    if w["kind"] == "omniglot":
        p = {"w": glorot(next(key), (64, w["ways"])), "b": jnp.zeros(w["ways"])}
        for i, c_in in enumerate((1, 64, 64, 64)):
            p |= {f"k{i}": glorot(next(key), (3, 3, c_in, 64)), f"c{i}": jnp.zeros(64),
                  f"g{i}": jnp.ones(64), f"be{i}": jnp.zeros(64)}  # fmt: skip
    else:
        dims = (1, 40, 40, 1)
        p = {}
        for i in range(3):
            p |= {f"w{i}": glorot(next(key), dims[i : i + 2]), f"b{i}": jnp.zeros(dims[i + 1])}
    return step, p, outer.init(p)


def run_jax(w: dict, impl: str) -> dict:
    """Compiles once, then times ``repeats`` meta-steps after ``warmup`` ones."""
    import resource

    jax = _jax_setup(w["resident_heap"])
    import numpy as np

    step, params, opt_state = (metax_step if impl == "metax" else reference_step)(w)
    batches = [random_tasks(w, s) for s in (1, 2)]
    jitted = jax.jit(step)
    t0 = time.perf_counter()
    compiled = jitted.lower(params, opt_state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    state = (params, opt_state)
    times = []
    for i in range(w["warmup"] + w["repeats"]):
        t0 = time.perf_counter()
        state = compiled(*state, batches[i % 2])
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The work of the workload: XLA's count on the reference with its inner loop
    # unrolled (a count on a compiled scan or chunk loop sees its body only once).
    # Lowered after the timing, so neither the steps nor the peak memory see it.
    ref, ref_params, ref_opt = reference_step(w, unroll=True)
    cost = jax.jit(ref).lower(ref_params, ref_opt, batches[0]).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "impl": impl,
        "compile_s": compile_s,
        "step_ms": [1000 * t for t in times[w["warmup"] :]],
        "first_step_ms": 1000 * times[0],
        "flops": float(cost.get("flops", float("nan"))),
        "peak_rss_mb": peak_rss_mb,
        "xla_temp_mb": memory.temp_size_in_bytes / 2**20 if memory else float("nan"),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__,
            "numpy": np.__version__,
        },
    }


def matmul_peak() -> dict:
    """Best float32 GFLOP/s of a 2048^3 matmul on this machine (XLA:CPU, 2 threads)."""
    jax = _jax_setup()
    import numpy as np

    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    f = jax.jit(lambda a, b: a @ b).lower(a, a).compile()
    jax.block_until_ready(f(a, a))
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, a))
        times.append(time.perf_counter() - t0)
    return {"matmul_peak_gflops": 2 * 2048**3 / float(np.min(times)) / 1e9}


# ---------------------------------------------------------------- the parent


def child(impl: str, w: dict) -> dict:
    """Runs one configuration in a fresh process; returns its JSON result.

    ``impl`` is ``metax``, ``reference`` or ``learn2learn``, optionally with workload
    overrides, e.g. ``metax:pooling=reduce_window`` (a variant timed in the same pairs).
    """
    name, *overrides = impl.split(":")
    for item in overrides:
        key, value = item.split("=", 1)
        w = {
            **w,
            key: json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value,
        }
    if name == "learn2learn":
        cmd = [str(L2L_PYTHON), str(HERE / "learn2learn_step.py"), json.dumps(w)]
    else:
        cmd = [sys.executable, __file__, "--child", name, json.dumps(w)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if proc.returncode:
        return {"impl": impl, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def describe(w: dict) -> str:
    order = "1st" if w["first_order"] else "2nd"
    remat = " remat" if w["remat"] else ""
    remat += f", metax in chunks of {w['chunk_size']}" if w["chunk_size"] else ""
    if w["kind"] == "sinusoid":
        return f"{w['name']}: sinusoid K={w['shots']}, {w['inner_steps']} step, {order} order"
    return (f"{w['name']}: Omniglot {w['ways']}w{w['shots']}s q={w['queries']}, "
            f"{w['inner_steps']} step(s), {order} order{remat}")  # fmt: skip


def compare(configs: list[dict], impls: list[str], pairs: int, peak: float) -> list[dict]:
    rows = []
    for w in configs:
        runs = {impl: [] for impl in impls}
        for _ in range(pairs):
            for impl in impls:  # alternate: metax, reference, learn2learn, metax, ...
                runs[impl].append(child(impl, w))
        row = {"workload": w, "describe": describe(w), "runs": runs, "peak_gflops": peak}
        rows.append(row)
        print(format_row(row), flush=True)
        with RESULTS.open("a") as f:
            f.write(
                json.dumps({**row, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()})
                + "\n"
            )
    return rows


def format_row(row: dict) -> str:
    w, runs = row["workload"], row["runs"]
    cells = []
    for impl, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            cells.append(f"{impl}: failed ({rs[0]['error']})")
            continue
        ms = median([median(r["step_ms"]) for r in ok])
        rss = max(r["peak_rss_mb"] for r in ok)
        text = f"{impl}: {ms:,.1f} ms, {1000 * w['meta_batch'] / ms:,.0f} tasks/s, {rss:,.0f} MB"
        if "compile_s" in ok[0]:
            text += f", compile {median([r['compile_s'] for r in ok]):.1f} s"
        if "xla_temp_mb" in ok[0]:
            text += f", XLA temporaries {ok[0]['xla_temp_mb']:,.0f} MB"
        flops = [r["flops"] for rs2 in runs.values() for r in rs2 if "flops" in r]
        if flops:
            gf = flops[0] / ms / 1e6
            text += f", {gf:.1f} GFLOP/s ({100 * gf / row['peak_gflops']:.0f}% of peak)"
        cells.append(text)
    ratios = []
    if "learn2learn" in runs and "metax" in runs:
        for a, b in zip(runs["metax"], runs["learn2learn"], strict=True):
            if "error" not in a and "error" not in b:
                ratios.append(median(b["step_ms"]) / median(a["step_ms"]))
        if ratios:
            cells.append(
                "learn2learn/metax time per pair: " + ", ".join(f"{r:.2f}x" for r in ratios)
            )
    if "reference" in runs and "metax" in runs:
        rel = [median(a["step_ms"]) / median(b["step_ms"]) for a, b in
               zip(runs["metax"], runs["reference"], strict=True) if "error" not in a and "error" not in b]  # fmt: skip
        if rel:
            cells.append("metax/reference time per pair: " + ", ".join(f"{r:.3f}" for r in rel))
    for variant in (impl for impl in runs if impl.startswith("metax:")):
        rel = [median(b["step_ms"]) / median(a["step_ms"]) for a, b in
               zip(runs["metax"], runs[variant], strict=True) if "error" not in a and "error" not in b]  # fmt: skip
        if rel:
            cells.append(f"{variant} / metax time per pair: " + ", ".join(f"{r:.3f}" for r in rel))
    return f"{row['describe']}\n  " + "\n  ".join(cells)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["B", "D", "A"])
    parser.add_argument("--impls", nargs="+", default=["metax", "reference", "learn2learn"])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--plot", action="store_true", help="workload C: time/memory PNG")
    parser.add_argument(
        "--cross-check", action="store_true", help="metax vs learn2learn meta-gradient"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("workload_json", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "peak":
        print(json.dumps(matmul_peak()))
        return
    if args.child:
        result = run_jax(json.loads(args.workload_json), args.child)
        print(json.dumps(result))
        return
    if "learn2learn" in args.impls or args.cross_check:
        subprocess.run(["bash", str(HERE / "learn2learn_env.sh")], check=True)
    if args.cross_check:
        from cross_check import cross_check

        cross_check(L2L_PYTHON, HERE / "learn2learn_step.py")
        return
    RESULTS.parent.mkdir(exist_ok=True)
    peak = json.loads(subprocess.run([sys.executable, __file__, "--child", "peak"], capture_output=True,
                                     text=True, check=True).stdout.splitlines()[-1])["matmul_peak_gflops"]  # fmt: skip
    print(f"machine: {machine()}; measured float32 matmul peak {peak:.0f} GFLOP/s", flush=True)
    rows = compare(workloads(args.workloads), args.impls, args.pairs, peak)
    if args.plot:
        from plot_inner_steps import plot

        plot(
            [r for r in rows if r["workload"]["name"] == "C"], HERE / "figures" / "inner_steps.png"
        )


if __name__ == "__main__":
    main()
