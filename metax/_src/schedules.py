"""MAML++'s annealing schedules: multi-step-loss weights and derivative order."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metax._src import validation
from metax._src.base import MetaLearner


def msl_weights(
    num_steps: int,
    epoch: jax.typing.ArrayLike,
    *,
    anneal_epochs: float,
    min_weight: float = 0.03,
) -> jax.Array:
    """Per-step weights of MAML++'s multi-step loss at ``epoch``.

    Training starts with equal weights ``1/num_steps``. Each epoch moves
    ``1/(num_steps * anneal_epochs)`` of weight from every non-final step to the final
    one, until the non-final weights reach ``min_weight / num_steps`` (by
    ``anneal_epochs``); the final weight is capped so the weights always sum to one.
    A pure ``jnp`` function: ``epoch`` may be traced, and the result is meant to be
    passed to the jitted step as an argument (``step_weights=``) so that annealing
    never recompiles.

    Args:
      num_steps: number of inner steps.
      epoch: the current epoch (a number or a scalar array; fractions allowed).
      anneal_epochs: epochs over which the weights move to the final step (> 0).
      min_weight: floor of the non-final weights, times ``num_steps``.

    Returns:
      A ``(num_steps,)`` float32 array that sums to 1.

    Example:
      >>> import metax
      >>> [round(w, 3) for w in metax.msl_weights(5, 0, anneal_epochs=10).tolist()]
      [0.2, 0.2, 0.2, 0.2, 0.2]
      >>> [round(w, 3) for w in metax.msl_weights(5, 100, anneal_epochs=10).tolist()]
      [0.006, 0.006, 0.006, 0.006, 0.976]
    """
    validation.check_num_steps(num_steps)
    if not anneal_epochs > 0:
        raise ValueError(f"anneal_epochs must be > 0, got {anneal_epochs}.")
    if not 0.0 <= min_weight <= 1.0:
        raise ValueError(f"min_weight must be in [0, 1], got {min_weight}.")
    n = num_steps
    epoch = jnp.asarray(epoch, jnp.float32)
    decay = 1.0 / n / anneal_epochs
    floor = min_weight / n
    early = jnp.maximum(1.0 / n - epoch * decay, floor)
    final = jnp.minimum(1.0 / n + epoch * (n - 1) * decay, 1.0 - (n - 1) * floor)
    return jnp.concatenate([jnp.full((n - 1,), early), final[None]]).astype(jnp.float32)


class DerivativeOrderAnnealing(NamedTuple):
    """Two learners, first order and exact, and the epoch at which to switch.

    Attributes:
      first_order: the learner used before ``switch_epoch``.
      second_order: the learner used from ``switch_epoch`` on.
      switch_epoch: the first epoch of second-order training.
    """

    first_order: MetaLearner
    second_order: MetaLearner
    switch_epoch: int

    def for_epoch(self, epoch: int) -> MetaLearner:
        """Returns the learner to train with in ``epoch`` (a Python int)."""
        return self.first_order if epoch < self.switch_epoch else self.second_order


def derivative_order_annealing(
    make_learner: Callable[..., MetaLearner], *, first_order_epochs: int
) -> DerivativeOrderAnnealing:
    """MAML++'s derivative-order annealing: first order for the first epochs, then exact.

    Both learners share one ``MetaParams`` layout, so training switches between them
    without touching parameters or optimizer state. Jit one meta-step per learner
    (two compiles in all) and pick with :meth:`DerivativeOrderAnnealing.for_epoch`.

    Args:
      make_learner: a factory called as ``make_learner(first_order=...)``, e.g.
        ``functools.partial(metax.maml_pp, loss_fn, num_steps=5, init_lr=0.1)``.
      first_order_epochs: number of initial first-order epochs (>= 0).

    Returns:
      A :class:`DerivativeOrderAnnealing`.

    Example:
      >>> import functools, jax.numpy as jnp, metax
      >>> loss = lambda w, b: jnp.mean((w - b) ** 2)
      >>> sched = metax.derivative_order_annealing(
      ...     functools.partial(metax.maml_pp, loss, num_steps=2, init_lr=0.1),
      ...     first_order_epochs=3)
      >>> sched.for_epoch(0) is sched.first_order, sched.for_epoch(3) is sched.second_order
      (True, True)
    """
    if isinstance(first_order_epochs, bool) or not isinstance(first_order_epochs, int):
        raise TypeError(f"first_order_epochs must be an int, got {first_order_epochs!r}.")
    if first_order_epochs < 0:
        raise ValueError(f"first_order_epochs must be >= 0, got {first_order_epochs}.")
    return DerivativeOrderAnnealing(
        first_order=make_learner(first_order=True),
        second_order=make_learner(first_order=False),
        switch_epoch=first_order_epochs,
    )
