"""Flax backbones for meta-learning."""

from metax.nn.batchnorm import BN_POLICIES as BN_POLICIES
from metax.nn.batchnorm import StepBatchNorm as StepBatchNorm
from metax.nn.conv import Conv3x3 as Conv3x3
from metax.nn.conv4 import Conv4 as Conv4
from metax.nn.mlp import MLP as MLP
from metax.nn.pooling import POOLINGS as POOLINGS
from metax.nn.pooling import max_pool_2x2 as max_pool_2x2
from metax.nn.resnet12 import ResNet12 as ResNet12

__all__ = [
    "BN_POLICIES",
    "MLP",
    "POOLINGS",
    "Conv3x3",
    "Conv4",
    "ResNet12",
    "StepBatchNorm",
    "max_pool_2x2",
]
