"""Workload C figure: median step time and peak memory against inner steps."""

from __future__ import annotations

from pathlib import Path


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def plot(rows: list[dict], out: Path) -> None:
    """``rows`` are ``meta_step_speed`` rows of workload C (metax runs only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        w = row["workload"]
        runs = [r for r in row["runs"].get("metax", []) if "error" not in r]
        if not runs:
            continue
        label = (
            "first order"
            if w["first_order"]
            else ("second order + remat" if w["remat"] else "second order")
        )
        ms = _median([_median(r["step_ms"]) for r in runs])
        rss = max(r["peak_rss_mb"] for r in runs)
        series.setdefault(label, []).append((w["inner_steps"], ms / 1000, rss / 1024))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for label, points in series.items():
        steps, secs, gib = zip(*sorted(points), strict=True)
        ax_t.plot(steps, secs, "o-", label=label)
        ax_m.plot(steps, gib, "o-", label=label)
    ax_t.set(xlabel="inner steps", ylabel="median s / meta-step", title="time")
    ax_m.set(xlabel="inner steps", ylabel="peak resident memory (GiB)", title="memory")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        "Omniglot 5-way 1-shot, 15 queries, meta-batch 32, Conv-4 (metax, chunks of 4 tasks)"
    )
    fig.tight_layout()
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
