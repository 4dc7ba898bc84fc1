"""Masks over a model's parameters: which layers an inner loop adapts."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from metax.nn.batchnorm import StepBatchNorm


def layer_mask(params: Any, layers: set[str]) -> Any:
    """Booleans over ``params``: ``True`` under the top-level ``layers``.

    Example:
      >>> layer_mask({"Dense_0": {"kernel": 1, "bias": 2}, "Dense_1": {"kernel": 3}}, {"Dense_1"})
      {'Dense_0': {'bias': False, 'kernel': False}, 'Dense_1': {'kernel': True}}
    """
    return {name: jax.tree.map(lambda _, n=name: n in layers, sub) for name, sub in params.items()}


def batch_norm_mask(model: nn.Module, *example_args: Any, **example_kwargs: Any) -> Any:
    """Booleans over ``model``'s parameters: ``True`` for those of its :class:`StepBatchNorm` layers.

    The layers are found by module type while tracing ``model.init`` on the example
    inputs (shapes only, nothing is computed), whatever their names.

    Example:
      >>> import jax.numpy as jnp
      >>> from metax.nn import Conv4, batch_norm_mask
      >>> mask = batch_norm_mask(Conv4(num_classes=5, features=4), jnp.zeros((1, 28, 28, 1)))
      >>> mask["StepBatchNorm_0"], mask["Dense_0"]
      ({'bias': True, 'scale': True}, {'bias': False, 'kernel': False})
    """
    paths = set()

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, StepBatchNorm):
            paths.add(context.module.path)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(
            lambda: model.init(jax.random.key(0), *example_args, **example_kwargs)
        )

    def in_batch_norm(path, _):
        names = tuple(getattr(k, "key", None) for k in path)
        return any(names[: len(p)] == p for p in paths)

    return jax.tree_util.tree_map_with_path(in_batch_norm, shapes["params"])
