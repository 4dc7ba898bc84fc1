"""Optax transformations whose hyperparameters are learned meta-parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from metax._src import validation
from metax._src.base import Params


def scale_by_learned_lr() -> optax.GradientTransformationExtraArgs:
    """Scales updates by minus a learned learning rate, one per parameter leaf.

    The rates are not stored in the transformation: ``update`` reads them from the
    extra argument ``hparams``, a pytree with the structure of the updates whose
    leaves broadcast against them (a scalar per leaf for MAML++'s per-layer rates,
    a full array for Meta-SGD-style per-parameter rates). :func:`metax.adapt` passes
    the current step's slice of ``MetaParams.hparams`` there, so the rates stay
    traced arrays that the outer optimizer learns.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; combine it with others through
      ``optax.chain`` (e.g. after ``optax.scale_by_adam()``).

    Example:
      >>> import jax.numpy as jnp, metax
      >>> tx = metax.scale_by_learned_lr()
      >>> g = {"w": jnp.ones(2)}
      >>> u, _ = tx.update(g, tx.init(g), hparams={"w": jnp.float32(0.5)})
      >>> u["w"].tolist()
      [-0.5, -0.5]
    """

    def init(params: Params) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates, state, params=None, *, hparams: Any = None, **extra):
        del params, extra
        if hparams is None:
            raise ValueError(
                "scale_by_learned_lr needs the learned rates: call update(..., hparams=rates) "
                "(metax.adapt does so when given hparams=)."
            )
        validation.check_same_structure(
            hparams, updates, what="the learned rates (hparams)", reference_name="the parameters"
        )
        rates = jax.tree_util.tree_leaves_with_path(hparams)
        for (path, lr), g in zip(rates, jax.tree.leaves(updates), strict=True):
            if not _broadcasts_to(jnp.shape(lr), g.shape):
                raise ValueError(
                    f"the learned rate at {jax.tree_util.keystr(path)} has shape {jnp.shape(lr)}, "
                    f"which does not broadcast to its parameter's shape {g.shape}."
                )
        updates = jax.tree.map(lambda g, lr: -jnp.asarray(lr, g.dtype) * g, updates, hparams)
        return updates, state

    return optax.GradientTransformationExtraArgs(init, update)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return jnp.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def per_step_rates(params: Params, num_steps: int, init_lr: float) -> Params:
    """MAML++'s LSLR initialisation: one ``(num_steps,)`` rate vector per parameter leaf.

    Args:
      params: the parameters the rates belong to.
      num_steps: number of inner steps.
      init_lr: the initial value of every rate.

    Returns:
      A pytree with the structure of ``params``, each leaf ``full((num_steps,), init_lr)``
      in the leaf's dtype.
    """
    validation.check_num_steps(num_steps)
    return jax.tree.map(lambda p: jnp.full((num_steps,), init_lr, jnp.result_type(p)), params)


def per_parameter_rates(params: Params, init_lr: float, *, num_steps: int = 1) -> Params:
    """Meta-SGD's rates: one per parameter entry, shaped ``(num_steps, *param.shape)``.

    With ``num_steps=1`` every inner step uses the same rates (:func:`per_step_slice`
    repeats the single step).

    Example:
      >>> import jax.numpy as jnp, metax
      >>> metax.per_parameter_rates({"w": jnp.zeros((2, 3))}, 0.5)["w"].shape
      (1, 2, 3)
    """
    validation.check_num_steps(num_steps)
    return jax.tree.map(
        lambda p: jnp.full((num_steps, *jnp.shape(p)), init_lr, jnp.result_type(p)), params
    )


def per_step_slice(hparams: Any, num_steps: int) -> Any:
    """Per-step hyperparameters for an inner loop of ``num_steps`` steps.

    The one rule for fine-tuning with more (or fewer) steps than were meta-trained:
    the first ``num_steps`` steps' values, the last trained step's values repeated
    beyond them. ``None`` stays ``None``.

    Example:
      >>> import jax.numpy as jnp, metax
      >>> metax.per_step_slice({"w": jnp.array([0.25, 0.5])}, 4)["w"].tolist()
      [0.25, 0.5, 0.5, 0.5]
    """
    validation.check_num_steps(num_steps)

    def fit(r):
        if num_steps <= r.shape[0]:
            return r[:num_steps]
        return jnp.concatenate([r, jnp.repeat(r[-1:], num_steps - r.shape[0], axis=0)])

    return None if hparams is None else jax.tree.map(fit, hparams)
