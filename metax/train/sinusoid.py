"""Sinusoid regression (Finn et al., 2017) as a task family."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import metax
from metax.data.sinusoid import sample_sinusoid_tasks
from metax.nn import MLP, layer_mask
from metax.train import plots
from metax.train.config import RunConfig
from metax.train.family import ModelSpec, TaskFamily
from metax.train.metrics import mean_and_ci95


@dataclasses.dataclass(frozen=True)
class SinusoidConfig(RunConfig):
    """``metax train sinusoid``: defaults follow Finn et al. (2017).

    Attributes:
      hidden: hidden layer widths of the MLP, e.g. 40,40.
      context_size: context parameters concatenated to the MLP's input (--algo cavia).
    """

    family: ClassVar[str] = "sinusoid"

    shots: int = 10
    meta_batch: int = 25
    steps: int = 70_000
    log_every: int = 100
    eval_every: int = 5_000
    checkpoint_every: int = 5_000
    eval_queries: int | None = 100
    hidden: tuple[int, ...] = (40, 40)
    context_size: int = 5


class Sinusoid(TaskFamily):
    """Regression of ``A sin(x - phase)`` from K points with an MLP; MSE loss."""

    config_class: ClassVar[type[RunConfig]] = SinusoidConfig

    def __init__(self, config: SinusoidConfig):
        self.config = config
        context = config.context_size if config.algo == "cavia" else 0
        self.model = MLP(hidden=config.hidden, context=context)

    def loss_fn(self, params, batch) -> jax.Array:
        """Mean squared error of the MLP on ``batch["x"]``, ``batch["y"]``."""
        return jnp.mean((self.model.apply({"params": params}, batch["x"]) - batch["y"]) ** 2)

    def model_spec(self) -> ModelSpec:
        """The MSE loss in its plain form; the last layer is the head."""
        shapes = jax.eval_shape(lambda: self.init(jax.random.key(0))[0])
        head = layer_mask(shapes, {f"Dense_{len(self.config.hidden)}"})
        context = layer_mask(shapes, {"context"}) if self.model.context else None
        return ModelSpec(self.loss_fn, {}, head_mask=head, context_mask=context)

    def init(self, key: jax.Array) -> tuple[Any, None]:
        """Fresh MLP parameters; no model state."""
        return self.model.init(key, jnp.zeros((1, 1)))["params"], None

    def sample_task(self, key: jax.Array) -> metax.Task:
        """One task of ``shots`` + ``queries`` points."""
        c = self.config
        tasks = sample_sinusoid_tasks(key, 1, shots=c.shots, queries=c.queries).tasks
        return jax.tree.map(lambda x: x[0], tasks)

    def mse_after_each_step(self, learner, meta_params, *, num_tasks: int, num_steps: int):
        """``[num_tasks, num_steps + 1]`` query MSE after 0..num_steps fine-tuning steps.

        The tasks come from ``eval_seed`` and are the same for every algorithm and run.
        """
        c = self.config

        def program():
            data = sample_sinusoid_tasks(
                jax.random.key(c.eval_seed), num_tasks, shots=c.shots, queries=c.eval_queries
            )

            def mse(meta_params):
                def one_task(task):
                    _, info = learner.adapt(
                        meta_params,
                        task.support,
                        num_steps=num_steps,
                        eval_fn=lambda p: self.loss_fn(p, task.query),
                    )
                    before = self.loss_fn(meta_params.params, task.query)
                    return jnp.concatenate([before[None], info.query_loss])

                return jax.vmap(one_task)(data.tasks)

            return mse

        return np.asarray(self.compiled(program, learner, num_tasks, num_steps)(meta_params))

    def validate(self, learner, meta_params, model_state) -> dict[str, float]:
        """Mean query MSE after one fine-tuning step on ``val_tasks`` tasks."""
        del model_state
        mse = self.mse_after_each_step(
            learner, meta_params, num_tasks=self.config.val_tasks, num_steps=1
        )
        return {"val_mse_1step": float(np.mean(mse[:, 1]))}

    def test(self, learner, meta_params, model_state) -> dict[str, Any]:
        """Query MSE (mean, 95% CI) after 0..``eval_inner_steps`` fine-tuning steps."""
        del model_state
        c = self.config
        mse = self.mse_after_each_step(
            learner, meta_params, num_tasks=c.test_tasks, num_steps=c.eval_inner_steps
        )
        rows = [mean_and_ci95(mse[:, k]) for k in range(mse.shape[1])]
        return {
            "mse": [m for m, _ in rows],
            "ci95": [h for _, h in rows],
            "diverged_tasks": [int(n) for n in np.sum(~np.isfinite(mse), axis=0)],
        }

    def plot(self, out: Path, records, learner, meta_params) -> None:
        """``loss_curve.png`` and ``fits.png`` (Finn et al.'s Figure 2)."""
        c = self.config
        title = f"{c.algo}, {c.shots}-shot, {c.inner_steps} inner step(s), {c.steps} meta-steps"
        plots.loss_curve(records, out / "loss_curve.png", title=title)
        data = sample_sinusoid_tasks(jax.random.key(c.eval_seed + 1), 4, shots=c.shots)
        xs = jnp.linspace(-5.0, 5.0, 200)[:, None]
        many = max(10, c.inner_steps)

        @jax.jit
        def curves(support):
            def after(k):
                adapted, _ = learner.adapt(meta_params, support, num_steps=k)
                return self.model.apply({"params": adapted}, xs)[:, 0]

            return after(1), after(many)

        after_1, after_many = jax.vmap(curves)(data.tasks.support)
        plots.regression_fits(
            xs[:, 0],
            truth=data.amplitude[:, None] * jnp.sin(xs[:, 0] - data.phase[:, None]),
            support=data.tasks.support,
            curves={
                "pre-update": self.model.apply({"params": meta_params.params}, xs)[:, 0],
                "after 1 step": after_1,
                f"after {many} steps": after_many,
            },
            path=out / "fits.png",
            title=title,
        )
