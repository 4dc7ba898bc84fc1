"""3x3 convolutions whose per-task (``vmap``ped) form is fast on every backend."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

STRATEGIES = ("auto", "patches", "patches_autodiff", "xla")


def resolve_strategy(strategy: str) -> str:
    """``auto`` is ``patches`` on CPU and ``xla`` on GPU/TPU."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown convolution strategy {strategy!r}; choose one of {STRATEGIES}.")
    if strategy == "auto":
        return "patches" if jax.default_backend() == "cpu" else "xla"
    return strategy


def _patches(x: jax.Array) -> jax.Array:
    """``[N, H, W, C] -> [N, H, W, 9C]``: the 3x3 SAME neighbourhood of every pixel."""
    _, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate(
        [padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
    )


def _flip(kernel: jax.Array) -> jax.Array:
    """``[3, 3, I, O] -> [3, 3, O, I]``, rotated by 180 degrees: the kernel of the input gradient."""
    return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


def conv3x3_patches_autodiff(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3x3 convolution as one matmul of 9 shifted views (im2col), derived by JAX.

    Differentiable in forward and reverse mode. Its reverse-mode input gradient is
    the transpose of the forward: a ``[M, O] @ [O, 9I]`` matmul and a scatter-add of
    nine shifted views, slow on CPU; :func:`conv3x3_patches` avoids both.
    """
    return _patches(x) @ kernel.reshape(-1, kernel.shape[-1])


@jax.custom_vjp
def conv3x3_patches(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3x3 convolution as patches-matmul, with hand-written reverse-mode rules.

    The value is :func:`conv3x3_patches_autodiff`'s. Under ``vmap`` over tasks with
    per-task kernels it is a batched matmul, which XLA:CPU runs far faster than the
    grouped convolution a ``vmap``ped ``lax.conv_general_dilated`` becomes.

    Its derivatives are again convolutions in the same fast form: the input
    gradient is the convolution of the output gradient with the flipped kernel,
    and the kernel gradient (:func:`conv3x3_kernel_grad`) has rules of its own that
    are convolutions too. So derivatives of every order in reverse mode (MAML's
    meta-gradient is reverse over reverse) stay exact and use only the fast matmul
    shape (measured against :func:`conv3x3_patches_autodiff` in benchmarks/RESULTS.md). Forward mode
    (``jax.jvp``, ``jax.jacfwd``) is not defined for a ``custom_vjp``; use
    ``conv3x3_patches_autodiff`` (``Conv3x3(strategy="patches_autodiff")``) there.

    Args:
      x: ``[N, H, W, I]`` images.
      kernel: ``[3, 3, I, O]`` (HWIO).

    Returns:
      ``[N, H, W, O]``.

    Example:
      >>> import jax.numpy as jnp
      >>> conv3x3_patches(jnp.ones((1, 3, 3, 1)), jnp.ones((3, 3, 1, 1)))[0, :, :, 0]
      Array([[4., 6., 4.],
             [6., 9., 6.],
             [4., 6., 4.]], dtype=float32)
    """
    return conv3x3_patches_autodiff(x, kernel)


def _keeping_inputs(f):
    """The forward rule of a two-argument ``custom_vjp``: ``f``'s value, both inputs as residuals."""
    return lambda a, b: (f(a, b), (a, b))


def _conv_bwd(residuals, grad_out):
    x, kernel = residuals
    return conv3x3_patches(grad_out, _flip(kernel)), conv3x3_kernel_grad(x, grad_out)


conv3x3_patches.defvjp(_keeping_inputs(conv3x3_patches), _conv_bwd)


@jax.custom_vjp
def conv3x3_kernel_grad(x: jax.Array, grad_out: jax.Array) -> jax.Array:
    """The kernel gradient of :func:`conv3x3_patches`: ``patches(x)^T @ grad_out``.

    Its own derivatives are convolutions: with respect to ``grad_out`` the
    convolution of ``x`` with the cotangent kernel, with respect to ``x`` the
    convolution of ``grad_out`` with the flipped cotangent kernel.

    Args:
      x: ``[N, H, W, I]``.
      grad_out: ``[N, H, W, O]``.

    Returns:
      ``[3, 3, I, O]``.
    """
    cols = _patches(x)
    flat = cols.reshape(-1, cols.shape[-1]).T @ grad_out.reshape(-1, grad_out.shape[-1])
    return flat.reshape(3, 3, x.shape[-1], grad_out.shape[-1])


def _kernel_grad_bwd(residuals, cotangent):
    x, grad_out = residuals
    return conv3x3_patches(grad_out, _flip(cotangent)), conv3x3_patches(x, cotangent)


conv3x3_kernel_grad.defvjp(_keeping_inputs(conv3x3_kernel_grad), _kernel_grad_bwd)


def conv3x3_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3x3 convolution with ``lax.conv_general_dilated`` (NHWC, HWIO)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


_CONVOLUTIONS = {
    "patches": conv3x3_patches,
    "patches_autodiff": conv3x3_patches_autodiff,
    "xla": conv3x3_xla,
}


class Conv3x3(nn.Module):
    """A 3x3, stride-1, SAME convolution with bias; ``strategy`` picks the kernel.

    Attributes:
      features: output channels.
      strategy: ``auto`` (``patches`` on CPU, ``xla`` elsewhere); ``patches``
        (:func:`conv3x3_patches`, reverse mode only); ``patches_autodiff`` (the same
        matmul with JAX's own derivatives, forward mode too); or ``xla``.
    """

    features: int
    strategy: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # noqa: D102
        kernel = self.param(
            "kernel", nn.initializers.xavier_uniform(), (3, 3, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        conv = _CONVOLUTIONS[resolve_strategy(self.strategy)]
        return conv(x, kernel.astype(x.dtype)) + bias
