"""Conv-4, the few-shot backbone of Finn et al. (2017)."""

from __future__ import annotations

import flax.linen as nn
import jax

from metax.nn.batchnorm import StepBatchNorm
from metax.nn.conv import Conv3x3
from metax.nn.pooling import max_pool_2x2


class Conv4(nn.Module):
    """4 x [conv 3x3 (``features`` filters), batch norm, ReLU, 2x2 max-pool] + linear.

    Attributes:
      num_classes: outputs (the N of N-way).
      features: filters per convolution (64 in Finn et al.).
      num_steps: inner steps, for the ``per_step`` batch-norm policy.
      bn_policy: ``batch``, ``per_step`` or ``per_step_batch`` (see :class:`StepBatchNorm`).
      conv_strategy: ``auto``, ``patches``, ``patches_autodiff`` or ``xla`` (see
        :class:`metax.nn.Conv3x3`).
      pooling: ``select`` or ``reduce_window`` (see :func:`max_pool_2x2`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = Conv4(num_classes=5)
      >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
      >>> model.apply(variables, jnp.zeros((3, 28, 28, 1))).shape
      (3, 5)
    """

    num_classes: int
    features: int = 64
    num_steps: int = 1
    bn_policy: str = "batch"
    conv_strategy: str = "auto"
    pooling: str = "select"

    @nn.compact
    def __call__(self, x: jax.Array, *, step: jax.Array | int = 0, train: bool = True) -> jax.Array:  # noqa: D102
        for _ in range(4):
            x = Conv3x3(self.features, self.conv_strategy)(x)
            x = StepBatchNorm(self.num_steps, self.bn_policy)(x, step=step, train=train)
            x = max_pool_2x2(nn.relu(x), method=self.pooling)
        return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
