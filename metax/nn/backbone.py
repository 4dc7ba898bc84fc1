"""What every few-shot backbone shares: its inner-loop settings and building blocks."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from metax.nn.batchnorm import StepBatchNorm
from metax.nn.conv import Conv3x3
from metax.nn.pooling import max_pool_2x2


class Backbone(nn.Module):
    """Base of :class:`metax.nn.Conv4` and :class:`metax.nn.ResNet12` (keyword-only settings).

    Its helpers create layers; call them from a subclass's ``nn.compact`` method.

    Attributes:
      num_steps: inner steps, for the per-step batch-norm policies.
      bn_policy: ``batch``, ``per_step`` or ``per_step_batch`` (see :class:`StepBatchNorm`).
      conv_strategy: ``auto``, ``patches``, ``patches_autodiff`` or ``xla`` (see
        :class:`metax.nn.Conv3x3`).
      pooling: ``select`` or ``reduce_window`` (see :func:`metax.nn.max_pool_2x2`).
    """

    num_steps: int = dataclasses.field(default=1, kw_only=True)
    bn_policy: str = dataclasses.field(default="batch", kw_only=True)
    conv_strategy: str = dataclasses.field(default="auto", kw_only=True)
    pooling: str = dataclasses.field(default="select", kw_only=True)

    def settings(self) -> dict[str, object]:
        """The four settings, to hand to a sub-backbone."""
        names = ("num_steps", "bn_policy", "conv_strategy", "pooling")
        return {name: getattr(self, name) for name in names}

    def conv(self, x: jax.Array, features: int) -> jax.Array:
        """A 3x3 convolution of this backbone's strategy."""
        return Conv3x3(features, self.conv_strategy)(x)

    def norm(self, x: jax.Array, *, step: jax.Array | int, train: bool) -> jax.Array:
        """Batch norm of this backbone's policy, told the inner step."""
        return StepBatchNorm(self.num_steps, self.bn_policy)(x, step=step, train=train)

    def pool(self, x: jax.Array) -> jax.Array:
        """2x2 max-pooling of this backbone's method."""
        return max_pool_2x2(x, method=self.pooling)
