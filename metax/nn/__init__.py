"""Flax backbones for meta-learning."""

from metax.nn.backbone import Backbone as Backbone
from metax.nn.batchnorm import BN_POLICIES as BN_POLICIES
from metax.nn.batchnorm import StepBatchNorm as StepBatchNorm
from metax.nn.conv import STRATEGIES as CONV_STRATEGIES
from metax.nn.conv import Conv3x3 as Conv3x3
from metax.nn.conv import conv3x3_kernel_grad as conv3x3_kernel_grad
from metax.nn.conv import conv3x3_patches as conv3x3_patches
from metax.nn.conv import conv3x3_patches_autodiff as conv3x3_patches_autodiff
from metax.nn.conv4 import Conv4 as Conv4
from metax.nn.losses import classification_loss as classification_loss
from metax.nn.masks import batch_norm_mask as batch_norm_mask
from metax.nn.masks import layer_mask as layer_mask
from metax.nn.mlp import MLP as MLP
from metax.nn.pooling import POOLINGS as POOLINGS
from metax.nn.pooling import max_pool_2x2 as max_pool_2x2
from metax.nn.resnet12 import ResNet12 as ResNet12

__all__ = [
    "BN_POLICIES",
    "CONV_STRATEGIES",
    "MLP",
    "POOLINGS",
    "Backbone",
    "Conv3x3",
    "Conv4",
    "ResNet12",
    "StepBatchNorm",
    "batch_norm_mask",
    "classification_loss",
    "conv3x3_kernel_grad",
    "conv3x3_patches",
    "conv3x3_patches_autodiff",
    "layer_mask",
    "max_pool_2x2",
]
