"""PNG plots of a run: learning curves and regression fits. Drawing only; no computation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def loss_curve(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Training loss and validation MSE against meta-steps (log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_mse_1step"]) for r in records if "val_mse_1step" in r]
    if train:
        ax.plot(*zip(*train, strict=True), lw=0.8, label="meta-training loss (query)")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation MSE after 1 step")
    ax.set(yscale="log", xlabel="meta-step", ylabel="MSE")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path, title)


def classification_curve(
    records: list[dict[str, Any]], path: str | Path, *, title: str = ""
) -> None:
    """Meta-training loss, training-query accuracy and validation accuracy against meta-steps."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    train = [(r["step"], r["loss"], r.get("train_accuracy")) for r in records if "loss" in r]
    val = [(r["step"], r["val_accuracy"]) for r in records if "val_accuracy" in r]
    if train:
        steps, losses, accs = zip(*train, strict=True)
        ax_loss.plot(steps, losses, lw=0.8)
        if all(a is not None for a in accs):
            ax_acc.plot(steps, accs, lw=0.8, alpha=0.6, label="meta-training query accuracy")
    if val:
        ax_acc.plot(*zip(*val, strict=True), "o-", label="validation accuracy (after fine-tuning)")
    ax_loss.set(yscale="log", xlabel="meta-step", ylabel="meta-training loss")
    ax_acc.set(xlabel="meta-step", ylabel="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    _save(fig, path, title)


def regression_fits(
    xs: Any,
    *,
    truth: Any,
    support: dict[str, Any],
    curves: dict[str, Any],
    path: str | Path,
    title: str = "",
) -> None:
    """One panel per task: ground truth, support points and fitted curves (Finn et al.'s Fig. 2).

    Args:
      xs: ``[points]`` inputs of the curves.
      truth: ``[tasks, points]`` true outputs.
      support: ``{"x", "y"}`` support points, ``[tasks, shots, 1]`` each.
      curves: label -> ``[tasks, points]`` (or ``[points]``, the same for every task).
      path: the PNG to write.
      title: figure title.
    """
    truth = np.asarray(truth)
    num_tasks = truth.shape[0]
    fig, axes = plt.subplots(1, num_tasks, figsize=(4 * num_tasks, 3.4), sharey=True)
    for t, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(xs, truth[t], "k-", lw=2, label="ground truth")
        for (label, ys), style in zip(curves.items(), (":", "--", "-", "-."), strict=False):
            ys = np.asarray(ys)
            ax.plot(xs, ys if ys.ndim == 1 else ys[t], style, label=label)
        shots = np.asarray(support["x"]).shape[1]
        ax.plot(
            support["x"][t], support["y"][t], "^", color="purple", label=f"{shots} support points"
        )
        ax.set_xlabel("x")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    _save(fig, path, title)


def _save(fig, path: str | Path, title: str) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
