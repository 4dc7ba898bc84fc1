"""A multilayer perceptron, the regression backbone of Finn et al. (2017)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """ReLU MLP: ``hidden`` layers, then a linear output of ``out_features``.

    Attributes:
      hidden: widths of the hidden layers (Finn et al.'s sinusoid net: ``(40, 40)``).
      out_features: output width.
      context: size of a context vector (a parameter named ``context``) concatenated
        to the input, for :func:`metax.cavia`; 0: none.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP(hidden=(40, 40))
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
      >>> model.apply({"params": params}, jnp.zeros((5, 1))).shape
      (5, 1)
    """

    hidden: Sequence[int] = (40, 40)
    out_features: int = 1
    context: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # noqa: D102
        if self.context:  # CAVIA's context parameters, concatenated to every input
            ctx = self.param("context", nn.initializers.zeros, (self.context,))
            x = jnp.concatenate([x, jnp.broadcast_to(ctx, (*x.shape[:-1], self.context))], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out_features)(x)
