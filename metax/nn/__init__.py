"""Flax backbones for meta-learning."""

from metax.nn.mlp import MLP as MLP

__all__ = ["MLP"]
