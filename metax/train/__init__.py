"""The training layer: task families, one train/evaluate/load, checkpoints, metrics, plots.

Needs the ``train`` extra: ``pip install 'metax-learn[train]'``. The names imported
below (``import x as x``) are the public API.
"""

from metax.extras import require_extra

require_extra("train")

from metax.train.checkpoint import Checkpointer as Checkpointer
from metax.train.checkpoint import CheckpointError as CheckpointError
from metax.train.config import RunConfig as RunConfig
from metax.train.family import ModelSpec as ModelSpec
from metax.train.family import TaskFamily as TaskFamily
from metax.train.loop import NonFiniteLossError as NonFiniteLossError
from metax.train.loop import TrainState as TrainState
from metax.train.metrics import MetricsLog as MetricsLog
from metax.train.metrics import mean_and_ci95 as mean_and_ci95
from metax.train.omniglot import OmniglotConfig as OmniglotConfig
from metax.train.run import FAMILIES as FAMILIES
from metax.train.run import evaluate as evaluate
from metax.train.run import load as load
from metax.train.run import train as train
from metax.train.sinusoid import SinusoidConfig as SinusoidConfig
