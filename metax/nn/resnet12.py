"""ResNet-12, the deeper few-shot backbone (Oreshkin et al., 2018; Lee et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from metax.nn.backbone import Backbone


class ResidualBlock(Backbone):
    """3 x [conv 3x3, batch norm, leaky ReLU] with a 1x1-conv shortcut, then 2x2 max-pool."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, *, step: jax.Array | int = 0, train: bool = True) -> jax.Array:  # noqa: D102
        shortcut = nn.Dense(self.features, use_bias=False)(x)  # 1x1 convolution
        shortcut = self.norm(shortcut, step=step, train=train)
        h = x
        for i in range(3):
            h = self.norm(self.conv(h, self.features), step=step, train=train)
            if i < 2:
                h = nn.leaky_relu(h, 0.1)
        return self.pool(nn.leaky_relu(h + shortcut, 0.1))


class ResNet12(Backbone):
    """Four residual blocks (``widths``), global average pooling, linear classifier.

    Attributes:
      num_classes: outputs (the N of N-way).
      widths: channels of the four blocks (64, 160, 320, 640 in the literature).
      num_steps, bn_policy, conv_strategy, pooling: keyword-only, see
        :class:`metax.nn.Backbone`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = ResNet12(num_classes=5, widths=(8, 8, 16, 16))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
      >>> model.apply(variables, jnp.zeros((3, 28, 28, 1))).shape
      (3, 5)
    """

    num_classes: int
    widths: Sequence[int] = (64, 160, 320, 640)

    @nn.compact
    def __call__(self, x: jax.Array, *, step: jax.Array | int = 0, train: bool = True) -> jax.Array:  # noqa: D102
        for width in self.widths:
            x = ResidualBlock(width, **self.settings())(x, step=step, train=train)
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))
