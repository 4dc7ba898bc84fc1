"""The algorithms the command line trains: one registry entry each.

An entry builds a :class:`metax.MetaLearner` from a run config and a family's
:class:`~metax.train.family.ModelSpec`; every learner has the same contract, so the
training step never asks which algorithm it runs. Adding an algorithm is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import optax

import metax
from metax.train.config import RunConfig
from metax.train.family import ModelSpec


class Algorithm(NamedTuple):
    """How to build one algorithm's learner and outer optimizer.

    Attributes:
      make: ``make(config, spec, first_order) -> MetaLearner``; ``first_order`` is
        the derivative order of the current annealing phase (learners without
        second-order terms ignore it).
      cosine_outer: anneal the outer rate with a cosine schedule over the run.
      help: one line for ``--help``.
    """

    make: Callable[[RunConfig, ModelSpec, bool], metax.MetaLearner]
    cosine_outer: bool
    help: str


def _inner_sgd(config: RunConfig, spec: ModelSpec) -> optax.GradientTransformation:
    return spec.restrict_inner(optax.sgd(config.inner_lr))


def _maml(config, spec, first_order):
    return metax.maml(
        spec.loss_fn,
        inner_opt=_inner_sgd(config, spec),
        num_steps=config.inner_steps,
        first_order=first_order,
        **spec.options,
    )


def _maml_pp(config, spec, first_order):
    return metax.maml_pp(
        spec.loss_fn,
        num_steps=config.inner_steps,
        init_lr=config.inner_lr,
        inner_opt=spec.restrict_inner(metax.scale_by_learned_lr()),
        first_order=first_order,
        **spec.options,
    )


def _reptile(config, spec, first_order):
    del first_order
    return metax.reptile(
        spec.loss_fn,
        inner_opt=_inner_sgd(config, spec),
        num_steps=config.inner_steps,
        **spec.options,
    )


def _pretrain(config, spec, first_order):
    del first_order
    options = {k: v for k, v in spec.options.items() if k != "query_loss_fn"}
    return metax.pretrain(
        spec.loss_fn, inner_opt=_inner_sgd(config, spec), num_steps=config.inner_steps, **options
    )


ALGORITHMS: dict[str, Algorithm] = {
    "maml": Algorithm(_maml, False, "MAML, exact second-order meta-gradient (Finn et al., 2017)"),
    "fomaml": Algorithm(lambda c, s, _: _maml(c, s, True), False, "first-order MAML"),
    "maml++": Algorithm(
        _maml_pp, True, "MAML++: learned per-layer per-step rates, multi-step loss"
    ),
    "reptile": Algorithm(_reptile, False, "Reptile (Nichol et al., 2018)"),
    "pretrain": Algorithm(_pretrain, False, "non-meta baseline: pre-train on pooled task data"),
}


def learners(config: RunConfig, spec: ModelSpec) -> metax.DerivativeOrderAnnealing:
    """The run's learners: first order for ``first_order_epochs`` epochs, then exact."""
    make = ALGORITHMS[config.algo].make
    return metax.derivative_order_annealing(
        lambda first_order: make(config, spec, first_order),
        first_order_epochs=config.first_order_epochs,
    )


def outer_optimizer(config: RunConfig) -> optax.GradientTransformation:
    """Adam at ``outer_lr``, cosine-annealed to 1% over the run where the algorithm says so."""
    if ALGORITHMS[config.algo].cosine_outer:
        return optax.adam(optax.cosine_decay_schedule(config.outer_lr, config.steps, alpha=0.01))
    return optax.adam(config.outer_lr)
