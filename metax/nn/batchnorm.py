"""Batch norm with explicit meta-learning policies, told the inner step index."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_POLICIES = ("batch", "per_step", "per_step_batch")


class StepBatchNorm(nn.Module):
    """Batch normalisation for inner loops.

    Policies:
      * ``batch`` (MAML): normalise with the statistics of the current batch, at
        training and at test; one learned scale/bias per channel; no state.
      * ``per_step`` (MAML++ BNRS + BNWB): one learned scale/bias per channel *per inner
        step*, and per-step statistics in the ``batch_stats`` collection. With
        ``train=True`` (the support set) it normalises with the batch's statistics and
        stores them in slot ``step`` (blended with the slot's old value by
        ``momentum``; the default 0 keeps exactly this support set's statistics); with
        ``train=False`` (the query set) it normalises with the stored statistics of
        slot ``step``. Query examples are thus never normalised with each other's
        statistics and never enter the state. ``momentum > 0`` turns the slots into
        running statistics carried across meta-steps.
      * ``per_step_batch`` (MAML++'s BNWB with batch statistics, which is what MAML++'s
        reference code does in practice): one learned scale/bias per channel per inner
        step as in ``per_step``, but every batch, support or query, is normalised
        with its own statistics as in ``batch`` (transductive at the query, like
        MAML); no state.

    ``step`` beyond ``num_steps - 1`` uses the last step's parameters and statistics.

    Attributes:
      num_steps: number of inner steps (per-step policies).
      policy: ``batch``, ``per_step`` or ``per_step_batch``.
      momentum: statistics decay (``new = momentum * old + (1 - momentum) * batch``).
      epsilon: variance floor.
    """

    num_steps: int = 1
    policy: str = "batch"
    momentum: float = 0.0
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, *, step: jax.Array | int = 0, train: bool = True) -> jax.Array:  # noqa: D102
        if self.policy not in BN_POLICIES:
            raise ValueError(
                f"unknown batch-norm policy {self.policy!r}; choose one of {BN_POLICIES}."
            )
        c = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        if self.policy == "batch":
            scale = self.param("scale", nn.initializers.ones, (c,))
            bias = self.param("bias", nn.initializers.zeros, (c,))
        else:
            step = jnp.minimum(jnp.asarray(step, jnp.int32), self.num_steps - 1)
            scale = self.param("scale", nn.initializers.ones, (self.num_steps, c))[step]
            bias = self.param("bias", nn.initializers.zeros, (self.num_steps, c))[step]
        if self.policy != "per_step":  # batch statistics, support and query alike
            mean, var = jnp.mean(x, axes), jnp.var(x, axes)
        else:
            ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (self.num_steps, c))
            ra_var = self.variable("batch_stats", "var", jnp.ones, (self.num_steps, c))
            if train:
                mean, var = jnp.mean(x, axes), jnp.var(x, axes)
                if not self.is_initializing():
                    m = self.momentum
                    new_mean = m * ra_mean.value[step] + (1 - m) * jax.lax.stop_gradient(mean)
                    new_var = m * ra_var.value[step] + (1 - m) * jax.lax.stop_gradient(var)
                    ra_mean.value = ra_mean.value.at[step].set(new_mean)
                    ra_var.value = ra_var.value.at[step].set(new_var)
            else:
                mean, var = ra_mean.value[step], ra_var.value[step]
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
