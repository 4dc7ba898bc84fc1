"""Test-time fine-tuning rates shared by every task family."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import metax


def fine_tuning_rates(meta_params: metax.MetaParams, num_steps: int, *, default_lr: float):
    """Per-step per-leaf rates for ``metax.adapt`` with ``metax.scale_by_learned_lr()``.

    MAML, FOMAML, Reptile and the baseline fine-tune with SGD at ``default_lr``;
    MAML++ uses its learned per-layer per-step rates, the last step's rates repeated
    beyond the number of steps it was trained for.
    """
    if meta_params.hparams is None:
        return jax.tree.map(
            lambda p: jnp.full((num_steps,), default_lr, p.dtype), meta_params.params
        )

    def extend(r):
        if num_steps <= r.shape[0]:
            return r[:num_steps]
        return jnp.concatenate([r, jnp.repeat(r[-1:], num_steps - r.shape[0])])

    return jax.tree.map(extend, meta_params.hparams)
