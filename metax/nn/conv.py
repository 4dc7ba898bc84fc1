"""3x3 convolutions whose per-task (``vmap``ped) form is fast on every backend."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

STRATEGIES = ("auto", "patches", "xla")


def resolve_strategy(strategy: str) -> str:
    """``auto`` is ``patches`` on CPU and ``xla`` on GPU/TPU."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown convolution strategy {strategy!r}; choose one of {STRATEGIES}.")
    if strategy == "auto":
        return "patches" if jax.default_backend() == "cpu" else "xla"
    return strategy


def conv3x3_patches(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3x3 convolution as one matmul of 9 shifted views (im2col).

    Under ``vmap`` over tasks with per-task kernels this is a batched matmul, which
    XLA:CPU runs far faster than the grouped convolution a ``vmap``ped
    ``lax.conv_general_dilated`` becomes.
    """
    _, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate(
        [padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
    )
    return cols @ kernel.reshape(9 * c, kernel.shape[-1])


def conv3x3_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3x3 convolution with ``lax.conv_general_dilated`` (NHWC, HWIO)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class Conv3x3(nn.Module):
    """A 3x3, stride-1, SAME convolution with bias; ``strategy`` picks the kernel.

    Attributes:
      features: output channels.
      strategy: ``auto`` (patches on CPU, XLA convolution elsewhere), ``patches`` or ``xla``.
    """

    features: int
    strategy: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # noqa: D102
        kernel = self.param(
            "kernel", nn.initializers.xavier_uniform(), (3, 3, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        conv = conv3x3_patches if resolve_strategy(self.strategy) == "patches" else conv3x3_xla
        return conv(x, kernel.astype(x.dtype)) + bias
