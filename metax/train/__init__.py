"""The training layer: config, jitted step, evaluation, checkpoints, metrics, plots."""

from metax.train.checkpoint import Checkpointer as Checkpointer
from metax.train.checkpoint import CheckpointError as CheckpointError
from metax.train.config import SinusoidConfig as SinusoidConfig
from metax.train.loop import NonFiniteLossError as NonFiniteLossError
from metax.train.loop import TrainState as TrainState
from metax.train.loop import fit as fit
from metax.train.metrics import MetricsLog as MetricsLog
from metax.train.metrics import mean_and_ci95 as mean_and_ci95

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "MetricsLog",
    "NonFiniteLossError",
    "SinusoidConfig",
    "TrainState",
    "fit",
    "mean_and_ci95",
]
