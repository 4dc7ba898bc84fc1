"""The task-family protocol: what ``metax.train`` needs from sinusoid, Omniglot or the next one."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

import jax

import metax
from metax.train.config import RunConfig


class ModelSpec(NamedTuple):
    """A family's model as the learners see it.

    Attributes:
      loss_fn: the support loss, of the form ``options`` describe.
      options: keyword options of the learner factories (``has_aux``, ``stateful``,
        ``takes_step``, ``query_loss_fn``); each factory is given those it takes.
      adapt_mask: ``None`` (the inner loop may adapt every parameter) or a pytree of
        booleans over the parameters, ``True`` where it may (e.g. all but batch norm);
        ANIL's, BOIL's and CAVIA's choices are taken within it.
      head_mask: ``True`` for the classifier or regression head (ANIL, BOIL).
      context_mask: ``True`` for the context parameters (CAVIA), ``None`` if the
        model has none.
    """

    loss_fn: Callable
    options: dict[str, Any]
    adapt_mask: Any = None
    head_mask: Any = None
    context_mask: Any = None


class TaskFamily(Protocol):
    """A task family, built from its run config (``Family(config)``).

    Data are loaded when first needed, so a run can be restored (for evaluation on
    other tasks, e.g. Lake's runs) without its training data. A family subclasses
    this protocol to inherit ``compiled`` and the defaults of ``check`` and
    ``train_metrics``.
    """

    config_class: ClassVar[type[RunConfig]]
    config: RunConfig

    def check(self) -> None:
        """Loads the data and raises, naming the value, if the config cannot be served."""
        return None

    def model_spec(self) -> ModelSpec:
        """The loss and its form, for the learners."""

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        """Fresh ``(params, model_state)``; the state is ``None`` for stateless models."""

    def sample_task(self, key: jax.Array) -> metax.Task:
        """One training task from its key (traceable: runs inside the jitted step)."""

    def validate(self, learner: metax.MetaLearner, meta_params, model_state) -> dict[str, float]:
        """Quick validation metrics, logged every ``eval_every`` meta-steps."""

    def test(self, learner: metax.MetaLearner, meta_params, model_state) -> dict[str, Any]:
        """The final evaluation on ``test_tasks`` test tasks: the results' numbers."""

    def train_metrics(self, info: metax.StepInfo) -> dict[str, float]:
        """Numbers to log beside the loss, from a meta-step's info."""
        del info
        return {}

    def plot(self, out: Path, records: list[dict], learner: metax.MetaLearner, meta_params) -> None:
        """Writes the run's figures into ``out``."""

    def compiled(self, program: Callable[[], Callable], *key: Hashable) -> Callable:
        """``jax.jit(program())``, built once per ``key``.

        Validation runs every ``eval_every`` steps; a new ``jax.jit`` each time would
        compile its fine-tuning anew. ``key`` names everything ``program`` depends on.
        """
        cache = vars(self).setdefault("_compiled", {})
        if key not in cache:
            cache[key] = jax.jit(program())
        return cache[key]
