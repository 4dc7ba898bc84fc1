"""Few-shot Omniglot classification (Conv-4 or ResNet-12) as a task family."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import metax
from metax._src.loss_forms import LossForm
from metax.data.episodes import EpisodeSpec, check_episode_spec, sample_episode
from metax.data.omniglot import Omniglot as OmniglotData
from metax.data.sources import load_omniglot
from metax.data.splits import SPLITS, make_split
from metax.nn import (
    BN_POLICIES,
    CONV_STRATEGIES,
    Conv4,
    ResNet12,
    batch_norm_mask,
    classification_loss,
    layer_mask,
)
from metax.train import plots
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
      episodes: mixed (an episode's classes from the whole split) or within_alphabet
        (from one alphabet, as in Lake et al.'s task; training, validation and test).
      image_size: side length the images are resized to.
      features: filters of Conv-4 (ResNet-12: widths features x (1, 2.5, 5, 10)).
      backbone: conv4 or resnet12.
      bn_policy: batch (MAML), per_step (MAML++'s per-step weights and support
        statistics; the query is normalised with them) or per_step_batch (per-step
        weights, batch statistics); auto: per_step for maml++, batch otherwise.
      inner_bn: adapt (the inner loop fine-tunes batch-norm weights) or freeze (only
        the outer loop learns them, as in Finn et al.'s and Antoniou et al.'s code).
      distortion: none, or affine (each meta-training image distorted by its own random
        rotation, shear, scaling and shift, as Koch et al. 2015 augmented Omniglot;
        validation and test images never are).
      conv_strategy: how 3x3 convolutions are computed (see metax.nn.Conv3x3).
    """

    family: ClassVar[str] = "omniglot"
    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        **RunConfig.choices,
        "split": SPLITS,
        "episodes": ("mixed", "within_alphabet"),
        "backbone": ("conv4", "resnet12"),
        "bn_policy": ("auto", *BN_POLICIES),
        "inner_bn": ("adapt", "freeze"),
        "distortion": ("none", "affine"),
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
    episodes: str = "mixed"
    image_size: int = 28
    features: int = 64
    backbone: str = "conv4"
    bn_policy: str = "auto"
    inner_bn: str = "adapt"
    distortion: str = "none"
    conv_strategy: str = "auto"


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
        within = config.episodes == "within_alphabet"
        shape = (config.ways, config.shots)
        distort = config.distortion == "affine"
        self.train_spec = EpisodeSpec(
            *shape, config.queries, rotate=True, within_alphabet=within, distort=distort
        )
        self.eval_spec = EpisodeSpec(*shape, config.eval_queries, within_alphabet=within)

    @functools.cached_property
    def pools(self) -> dict[str, tuple[jax.Array, np.ndarray]]:
        """Each part's images on the device and alphabets, checked against the episodes."""
        data = self._data or load_omniglot(self.config.data, size=self.config.image_size)
        parts = make_split(self.config.split, data)._asdict()
        for name, classes in parts.items():
            spec, part = (
                (self.train_spec, "meta-training") if name == "train" else (self.eval_spec, name)
            )
            check_episode_spec(
                spec,
                len(classes),
                data.images.shape[1],
                alphabet=data.alphabet[classes],
                name=f"{part} split",
                alphabet_names=data.alphabet_names,
            )
        return {name: (jnp.asarray(data.images[c]), data.alphabet[c]) for name, c in parts.items()}

    def check(self) -> None:
        """Loads the data and checks the episode shapes (before anything compiles)."""
        _ = self.pools  # loading validates, naming what is wrong

    def model_spec(self) -> ModelSpec:
        """Cross-entropy in the batch-norm policy's loss form; ``inner_bn`` as the adapt mask."""
        options = {**self.form._asdict()}
        flags = {"stateful": self.form.stateful, "takes_step": self.form.takes_step}
        if self.form.stateful:  # the query is normalised with the support statistics
            options["query_loss_fn"] = classification_loss(self.model, train=False, **flags)
        bn = batch_norm_mask(self.model, self.example)
        freeze = self.config.inner_bn == "freeze"
        return ModelSpec(
            classification_loss(self.model, train=True, **flags),
            options,
            adapt_mask=jax.tree.map(lambda is_bn: not is_bn, bn) if freeze else None,
            head_mask=layer_mask(bn, {"Dense_0"}),
        )

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        """Fresh parameters and, for the per-step policy, its statistics."""
        variables = self.model.init(key, self.example)
        state = variables.get("batch_stats", {}) if self.form.stateful else None
        return variables["params"], state

    def sample_task(self, key: jax.Array) -> metax.Task:
        """A training episode with rotation augmentation, drawn on the device."""
        images, alphabet = self.pools["train"]
        return sample_episode(key, images, self.train_spec, alphabet=alphabet)

    def episode_logits(
        self, learner, meta_params, model_state, task: metax.Task, *, per_image: bool = False
    ) -> jax.Array:
        """Query logits after fine-tuning on the support set for ``eval_inner_steps`` steps.

        With the per-step policy the query is normalised with the support statistics of
        the last step, as in meta-training. Otherwise with batch statistics: of the whole
        query set (transductive), or with ``per_image`` of the support set plus that one
        image, so that no other query image influences its score.
        """
        steps = self.config.eval_inner_steps
        adapted, info = learner.adapt(meta_params, task.support, num_steps=steps, state=model_state)
        variables = {"params": adapted}
        if self.form.stateful:
            variables["batch_stats"] = info.state
        apply = functools.partial(
            self.model.apply, variables, step=steps - 1, train=not self.form.stateful
        )
        if not per_image or self.form.stateful:
            return apply(task.query["x"])
        with_support = lambda x: apply(jnp.concatenate([task.support["x"], x[None]]))[-1]  # noqa: E731
        return jax.vmap(with_support)(task.query["x"])

    def accuracies(self, learner, meta_params, model_state, *, pool: str, num_tasks: int):
        """Query accuracy of ``num_tasks`` episodes of ``pool``, the same for every run."""

        def program():
            images, alphabet = self.pools[pool]
            seed = self.config.eval_seed + (0 if pool == "test" else 1)
            keys = jax.random.split(jax.random.key(seed), num_tasks)

            def accuracy(meta_params, model_state, key):
                task = sample_episode(key, images, self.eval_spec, alphabet=alphabet)
                logits = self.episode_logits(learner, meta_params, model_state, task)
                return jnp.mean(jnp.argmax(logits, -1) == task.query["y"])

            return lambda mp, ms: jax.lax.map(lambda k: accuracy(mp, ms, k), keys)

        each = self.compiled(program, learner, pool, num_tasks)
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
