"""Conv-4, the few-shot backbone of Finn et al. (2017)."""

from __future__ import annotations

import flax.linen as nn
import jax

from metax.nn.backbone import Backbone


class Conv4(Backbone):
    """4 x [conv 3x3 (``features`` filters), batch norm, ReLU, 2x2 max-pool] + linear.

    Attributes:
      num_classes: outputs (the N of N-way).
      features: filters per convolution (64 in Finn et al.).
      num_steps, bn_policy, conv_strategy, pooling: keyword-only, see
        :class:`metax.nn.Backbone`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = Conv4(num_classes=5)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
      >>> model.apply(variables, jnp.zeros((3, 28, 28, 1))).shape
      (3, 5)
    """

    num_classes: int
    features: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, *, step: jax.Array | int = 0, train: bool = True) -> jax.Array:  # noqa: D102
        for _ in range(4):
            x = self.norm(self.conv(x, self.features), step=step, train=train)
            x = self.pool(nn.relu(x))
        return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
