"""PNG plots of a run: learning curves and sinusoid fits before/after adaptation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import metax
from metax.data.sinusoid import sample_sinusoid_tasks


def loss_curve(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Training loss and validation MSE against meta-steps (log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_mse_1step"]) for r in records if "val_mse_1step" in r]
    if train:
        ax.plot(*zip(*train, strict=True), lw=0.8, label="meta-training loss (query)")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation MSE after 1 step (100 tasks)")
    ax.set_yscale("log")
    ax.set_xlabel("meta-step")
    ax.set_ylabel("MSE")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sinusoid_fits(
    config, problem, meta_params, path: str | Path, *, title: str = "", num_tasks: int = 4
) -> None:
    """Ground truth, K support points, and the model before and after 1 and 10 steps.

    As in Finn et al. (2017), Figure 2, on ``num_tasks`` test tasks.
    """
    from metax.train.sinusoid import eval_rates

    data = sample_sinusoid_tasks(
        jax.random.key(config.eval_seed + 1), num_tasks, shots=config.shots
    )
    xs = jnp.linspace(-5.0, 5.0, 200)[:, None]
    steps = max(10, config.inner_steps)
    rates = eval_rates(config, meta_params, steps)
    apply = problem.model.apply
    params = meta_params.params

    @jax.jit
    def fitted_curves(support):
        def after(k):
            adapted, _ = metax.adapt(
                problem.loss_fn,
                params,
                support,
                metax.scale_by_learned_lr(),
                k,
                hparams=jax.tree.map(lambda r: r[:k], rates),
            )
            return apply({"params": adapted}, xs)

        return after(1), after(steps)

    curves = jax.vmap(fitted_curves)(data.tasks.support)
    fig, axes = plt.subplots(1, num_tasks, figsize=(4 * num_tasks, 3.4), sharey=True)
    for t, ax in enumerate(np.atleast_1d(axes)):
        support = jax.tree.map(lambda a, t=t: a[t], data.tasks.support)
        curve = {1: curves[0][t], steps: curves[1][t]}
        truth = data.amplitude[t] * jnp.sin(xs - data.phase[t])
        ax.plot(xs, truth, "k-", lw=2, label="ground truth")
        ax.plot(xs, apply({"params": params}, xs), ":", label="pre-update")
        ax.plot(xs, curve[1], "--", label="after 1 step")
        ax.plot(xs, curve[steps], "-", label=f"after {steps} steps")
        ax.plot(
            support["x"], support["y"], "^", color="purple", label=f"{config.shots} support points"
        )
        ax.set_xlabel("x")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
