"""The registry of task families: one entry each, the key is ``config.json``'s ``family``."""

from __future__ import annotations

from metax.train.family import TaskFamily
from metax.train.omniglot import Omniglot
from metax.train.sinusoid import Sinusoid

FAMILIES: dict[str, type[TaskFamily]] = {"sinusoid": Sinusoid, "omniglot": Omniglot}
