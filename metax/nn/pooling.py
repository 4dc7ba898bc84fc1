"""2x2 max-pooling whose backward pass is cheap on CPU."""

from __future__ import annotations

import jax
from flax import linen as nn

POOLINGS = ("reshape", "reduce_window")


def max_pool_2x2(x: jax.Array, *, method: str = "reshape") -> jax.Array:
    """2x2, stride-2 max-pooling of ``[N, H, W, C]``; odd trailing rows/columns are dropped.

    ``reshape`` takes the maximum over a ``[N, H/2, 2, W/2, 2, C]`` view. Its gradient
    is JAX's reduce-max rule, which shares the cotangent equally between tied
    maxima; that is ordinary elementwise work which XLA fuses, and it made a
    second-order Omniglot meta-step ~20% faster on CPU than ``reduce_window``
    (Flax's ``nn.max_pool``), whose gradient is a select-and-scatter (all of the
    cotangent to the first maximum of a window). The two agree wherever a window has
    one maximum; after a ReLU, ties between positive values are rare.

    Example:
      >>> import jax.numpy as jnp
      >>> max_pool_2x2(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
      Array([[ 5.,  7.],
             [13., 15.]], dtype=float32)
    """
    if method not in POOLINGS:
        raise ValueError(f"unknown pooling method {method!r}; choose one of {POOLINGS}.")
    if x.ndim != 4:
        raise ValueError(f"max_pool_2x2 expects [N, H, W, C], got shape {x.shape}.")
    if method == "reduce_window":
        return nn.max_pool(x, (2, 2), strides=(2, 2))
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
