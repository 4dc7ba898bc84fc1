"""2x2 max-pooling whose backward pass is cheap on CPU and exact under ``jit``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

POOLINGS = ("select", "reduce_window")


def max_pool_2x2(x: jax.Array, *, method: str = "select") -> jax.Array:
    """2x2, stride-2 max-pooling of ``[N, H, W, C]``; odd trailing rows/columns are dropped.

    Both methods send the whole cotangent of a window to its first maximum (row-major),
    like PyTorch's and Flax's max-pooling.

    ``select`` (the default) splits ``x`` into the four strided views of the window
    corners, decides the winner from ``stop_gradient`` copies, and selects it with
    ``jnp.where``. Its derivatives of every order are then selects with fixed
    masks: elementwise work that XLA fuses, where ``reduce_window`` (Flax's
    ``nn.max_pool``) differentiates to a select-and-scatter; the measured
    difference is in benchmarks/RESULTS.md.

    Why not ``x.reshape(...).max(axes)``: JAX differentiates a reduce-max through
    ``x == max(x)`` masks. Under ``jit``, XLA may recompute ``x`` (e.g. a batch-norm
    expression) in two fusions with different rounding (FMA contraction), the
    equality then fails, and whole windows lose their gradient: measured here, the
    inner-loop gradient of a Conv-4 under ``lax.scan`` differed from the eager one by
    up to 0.02 in the first convolution's kernel. Here every window's masks pick
    exactly one corner, so no window loses its gradient; a recomputation that rounds
    differently can at most move it between two corners equal to within rounding.

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
    h, w = x.shape[1] - x.shape[1] % 2, x.shape[2] - x.shape[2] % 2
    corners = [x[:, i:h:2, j:w:2] for i in (0, 1) for j in (0, 1)]  # row-major window order
    a, b, c, d = (jax.lax.stop_gradient(v) for v in corners)
    take_a = (a >= b) & (a >= c) & (a >= d)
    take_b = (b >= c) & (b >= d)
    take_c = c >= d
    return jnp.where(
        take_a, corners[0], jnp.where(take_b, corners[1], jnp.where(take_c, corners[2], corners[3]))
    )
