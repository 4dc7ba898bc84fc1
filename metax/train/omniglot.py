"""Few-shot Omniglot classification (Conv-4 or ResNet-12) as a task family."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import metax
from metax._src.loss_forms import LossForm
from metax.data.episodes import EpisodeSpec, check_episode_spec, sample_episode, sample_episodes
from metax.data.omniglot import Omniglot as OmniglotData
from metax.data.sources import load_omniglot
from metax.data.splits import SPLITS, make_split
from metax.nn import BN_POLICIES, CONV_STRATEGIES, Conv4, ResNet12, batch_norm_mask, layer_mask
from metax.train import plots
from metax.train.algorithms import ALGORITHMS
from metax.train.config import RunConfig
from metax.train.family import ModelSpec, TaskFamily
from metax.train.metrics import mean_and_ci95


@dataclasses.dataclass(frozen=True)
class OmniglotConfig(RunConfig):
    """``metax train omniglot``: defaults follow Finn et al. (2017).

    With batch statistics (``bn_policy`` ``batch`` or ``per_step_batch``) the query
    set is normalised as one batch, so its size is part of the test protocol:
    ``eval_queries`` defaults to ``queries`` (1 per class in 1-shot), as in Finn
    et al.'s and Antoniou et al.'s code.

    Attributes:
      data: an Omniglot npz, a folder or zip of <Alphabet>/characterNN/*.png, or tfds.
      split: maml (1,100 train / 100 val / 423 test characters, alphabets mixed) or
        alphabet (Lake's evaluation alphabets for test, 5 background alphabets for val).
      ways: classes per episode (N).
      image_size: side length the images are resized to.
      features: filters of Conv-4 (ResNet-12: widths features x (1, 2.5, 5, 10)).
      backbone: conv4 or resnet12.
      bn_policy: batch (MAML), per_step (MAML++'s per-step weights and support
        statistics; the query is normalised with them) or per_step_batch (per-step
        weights, batch statistics); auto: per_step for maml++, batch otherwise.
      inner_bn: adapt (the inner loop fine-tunes batch-norm weights) or freeze (only
        the outer loop learns them, as in Finn et al.'s and Antoniou et al.'s code).
      conv_strategy: how 3x3 convolutions are computed (see metax.nn.Conv3x3).
    """

    family: ClassVar[str] = "omniglot"
    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "algo": tuple(ALGORITHMS),
        "split": SPLITS,
        "backbone": ("conv4", "resnet12"),
        "bn_policy": ("auto", *BN_POLICIES),
        "inner_bn": ("adapt", "freeze"),
        "conv_strategy": CONV_STRATEGIES,
    }

    data: str = ""
    split: str = "maml"
    inner_lr: float = 0.4
    steps: int = 60_000
    log_every: int = 50
    checkpoint_every: int = 500
    val_tasks: int = 200
    eval_seed: int = 4321
    steps_per_epoch: int = 500
    ways: int = 5
    image_size: int = 28
    features: int = 64
    backbone: str = "conv4"
    bn_policy: str = "auto"
    inner_bn: str = "adapt"
    conv_strategy: str = "auto"


def cross_entropy_loss(model, *, train: bool, form: LossForm):
    """Mean cross-entropy with accuracy as aux, in the loss form ``form`` describes."""

    def loss(params, *args):
        state = args[0] if form.stateful else None
        batch = args[1] if form.stateful else args[0]
        step = args[-1] if form.takes_step else 0
        variables = {"params": params, **({"batch_stats": state} if form.stateful else {})}
        if form.stateful and train:
            logits, updates = model.apply(
                variables, batch["x"], step=step, train=True, mutable=["batch_stats"]
            )
            state = updates["batch_stats"]
        else:
            logits = model.apply(variables, batch["x"], step=step, train=train)
        value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        aux = {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}
        return (value, (state, aux)) if form.stateful else (value, aux)

    return loss


class Omniglot(TaskFamily):
    """N-way K-shot episodes of Omniglot characters, sampled on the device.

    Args:
      config: the run's config.
      data: the dataset, if already loaded (default: loaded from ``config.data``
        when first needed).
    """

    config_class: ClassVar[type[RunConfig]] = OmniglotConfig

    def __init__(self, config: OmniglotConfig, *, data: OmniglotData | None = None):
        self.config = config
        self._data = data
        policy = config.bn_policy
        if policy == "auto":
            policy = "per_step" if config.algo == "maml++" else "batch"
        common = dict(num_classes=config.ways, num_steps=config.inner_steps, bn_policy=policy)
        common["conv_strategy"] = config.conv_strategy
        f = config.features
        self.model = (
            Conv4(features=f, **common)
            if config.backbone == "conv4"
            else ResNet12(widths=(f, int(2.5 * f), 5 * f, 10 * f), **common)
        )
        self.form = LossForm(
            has_aux=True, stateful=policy == "per_step", takes_step=policy != "batch"
        )
        self.example = jnp.zeros((2, config.image_size, config.image_size, 1))  # for init
        self.train_spec = EpisodeSpec(config.ways, config.shots, config.queries, rotate=True)
        self.eval_spec = EpisodeSpec(config.ways, config.shots, config.eval_queries)

    @functools.cached_property
    def pools(self) -> dict[str, jax.Array]:
        """The train, val and test characters' images on the device, checked against the episodes."""
        data = self._data or load_omniglot(self.config.data, size=self.config.image_size)
        split = make_split(self.config.split, data)
        drawers = data.images.shape[1]
        check_episode_spec(self.train_spec, len(split.train), drawers, name="meta-training split")
        for name in ("val", "test"):
            count = len(getattr(split, name))
            check_episode_spec(self.eval_spec, count, drawers, name=f"{name} split")
        return {name: jnp.asarray(data.images[getattr(split, name)]) for name in split._fields}

    def check(self) -> None:
        """Loads the data and checks the episode shapes (before anything compiles)."""
        _ = self.pools  # loading validates, naming what is wrong

    def model_spec(self) -> ModelSpec:
        """Cross-entropy in the batch-norm policy's loss form; ``inner_bn`` as the adapt mask."""
        options = {**self.form._asdict()}
        if self.form.stateful:  # the query is normalised with the support statistics
            options["query_loss_fn"] = cross_entropy_loss(self.model, train=False, form=self.form)
        bn = batch_norm_mask(self.model, self.example)
        freeze = self.config.inner_bn == "freeze"
        return ModelSpec(
            cross_entropy_loss(self.model, train=True, form=self.form),
            options,
            adapt_mask=jax.tree.map(lambda is_bn: not is_bn, bn) if freeze else None,
            head_mask=layer_mask(bn, {"Dense_0"}),
        )

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        """Fresh parameters and, for the per-step policy, its statistics."""
        variables = self.model.init(key, self.example)
        return variables["params"], (
            variables.get("batch_stats", {}) if self.form.stateful else None
        )

    def sample(self, key: jax.Array) -> metax.Task:
        """``meta_batch`` training episodes with rotation augmentation, drawn on the device."""
        return sample_episodes(key, self.pools["train"], self.train_spec, self.config.meta_batch)

    def episode_logits(
        self, learner: metax.MetaLearner, meta_params, model_state, task: metax.Task
    ) -> jax.Array:
        """Query logits after fine-tuning on the support set for ``eval_inner_steps`` steps.

        With the per-step policy the query is normalised with the support statistics of
        the last step, as in meta-training; otherwise with its own batch statistics.
        """
        steps = self.config.eval_inner_steps
        adapted, info = learner.adapt(meta_params, task.support, num_steps=steps, state=model_state)
        variables = {"params": adapted}
        if self.form.stateful:
            variables["batch_stats"] = info.state
        return self.model.apply(
            variables, task.query["x"], step=steps - 1, train=not self.form.stateful
        )

    def accuracies(self, learner, meta_params, model_state, *, pool: str, num_tasks: int):
        """Query accuracy of ``num_tasks`` episodes of ``pool``, the same for every run."""
        images = self.pools[pool]
        seed = self.config.eval_seed + (0 if pool == "test" else 1)
        # keys split in blocks of 50, as metax 0.1 drew them: the same episodes as before
        keys = jax.random.split(jax.random.key(seed), -(-num_tasks // 50) * 50)[:num_tasks]

        def accuracy(meta_params, model_state, key):
            task = sample_episode(key, images, self.eval_spec)
            logits = self.episode_logits(learner, meta_params, model_state, task)
            return jnp.mean(jnp.argmax(logits, -1) == task.query["y"])

        each = jax.jit(lambda mp, ms: jax.lax.map(lambda k: accuracy(mp, ms, k), keys))
        return np.asarray(each(meta_params, model_state))

    def validate(self, learner, meta_params, model_state) -> dict[str, float]:
        """Mean accuracy on ``val_tasks`` validation episodes."""
        acc = self.accuracies(
            learner, meta_params, model_state, pool="val", num_tasks=self.config.val_tasks
        )
        return {"val_accuracy": float(np.mean(acc))}

    def test(self, learner, meta_params, model_state) -> dict[str, Any]:
        """Accuracy and its 95% interval on ``test_tasks`` test episodes."""
        acc = self.accuracies(
            learner, meta_params, model_state, pool="test", num_tasks=self.config.test_tasks
        )
        mean, ci = mean_and_ci95(acc)
        return {"ways": self.config.ways, "test_accuracy": mean, "ci95": ci}

    def train_metrics(self, info: metax.StepInfo) -> dict[str, float]:
        """The meta-batch's query accuracy after adaptation."""
        return {"train_accuracy": float(jnp.mean(info.aux.query_aux["accuracy"]))}

    def plot(self, out: Path, records, learner, meta_params) -> None:
        """``learning_curve.png``: loss, training and validation accuracy."""
        del learner, meta_params
        c = self.config
        title = f"{c.algo} {c.ways}-way {c.shots}-shot Omniglot"
        plots.classification_curve(records, out / "learning_curve.png", title=title)
