"""The algorithms the command line trains: one registry entry (a ``metax`` factory) each.

Every learner has the same contract, so the training step never asks which one it runs.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import optax

import metax

if TYPE_CHECKING:  # config.py takes its algorithm choices from here
    from metax.train.config import RunConfig
    from metax.train.family import ModelSpec


class Algorithm(NamedTuple):
    """One algorithm of the command line.

    Attributes:
      factory: its ``metax`` learner factory; it is given the keywords below that it
        takes (its own, and :func:`metax.maml`'s when it forwards them).
      help: one line for ``--help``.
      learned_rates: the inner rates are meta-parameters (``init_lr``) rather than
        plain SGD's (``inner_opt``).
      outer: ``adam`` or ``hypergradient`` (:func:`metax.hypergradient_adam`, which
        learns its own rate; inner rates: SGD).
      decay: the paper's schedule of the outer rate, ``constant`` or ``cosine``: what
        ``outer_decay="auto"`` means.
      first_order: a fixed derivative order (FOMAML); ``None`` follows the annealing.
    """

    factory: Callable[..., metax.MetaLearner]
    help: str
    learned_rates: bool = False
    outer: str = "adam"
    decay: str = "constant"
    first_order: bool | None = None


ALGORITHMS: dict[str, Algorithm] = {
    "maml": Algorithm(metax.maml, "MAML, exact second-order meta-gradient (Finn et al., 2017)"),
    "fomaml": Algorithm(metax.maml, "first-order MAML", first_order=True),
    "maml++": Algorithm(
        metax.maml_pp, "MAML++ (Antoniou et al., 2019)", learned_rates=True, decay="cosine"
    ),
    "reptile": Algorithm(metax.reptile, "Reptile (Nichol et al., 2018)"),
    "pretrain": Algorithm(metax.pretrain, "non-meta baseline: pre-train on pooled task data"),
    "meta-sgd": Algorithm(metax.meta_sgd, "Meta-SGD (Li et al., 2017)", learned_rates=True),
    "anil": Algorithm(metax.anil, "only the head adapts (Raghu et al., 2020)"),
    "boil": Algorithm(metax.boil, "only the body adapts (Oh et al., 2021)"),
    "cavia": Algorithm(metax.cavia, "only a context vector adapts (Zintgraf et al., 2019)"),
    "imaml": Algorithm(metax.imaml, "implicit gradients (Rajeswaran et al., 2019)"),
    "alpha-maml": Algorithm(
        metax.alpha_maml,
        "Alpha-MAML (Behl et al., 2019)",
        learned_rates=True,
        outer="hypergradient",
    ),
}


# Settings only some algorithms read: any other algorithm refuses a value but the default.
OWN_SETTINGS = {
    "msl_anneal_epochs": ("maml++",),
    **dict.fromkeys(("lam", "cg_steps", "cg_damping", "lam_damping"), ("imaml",)),
    **dict.fromkeys(("hyper_lr", "outer_hyper_lr"), ("alpha-maml",)),
    "context_size": ("cavia",),  # of families whose model takes a context
}


def check_settings(config: RunConfig, spec: ModelSpec) -> None:
    """Raises, naming each value, where ``config`` asks what its algorithm or model never does."""
    algo, accepted = ALGORITHMS[config.algo], _accepted(ALGORITHMS[config.algo].factory)
    if algo.factory is metax.cavia and spec.context_mask is None:
        raise ValueError(
            f"--algo cavia needs a model with context parameters; the {config.family} family's "
            "model has none."
        )
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    unused = [
        f"{name}={getattr(config, name)!r}"
        for name, algos in OWN_SETTINGS.items()
        if name in defaults and config.algo not in algos and getattr(config, name) != defaults[name]
    ]
    if algo.outer == "hypergradient" and config.outer_decay != "auto":
        unused.append(f"outer_decay={config.outer_decay!r} (it learns its outer rate)")
    if config.first_order_epochs and ("first_order" not in accepted or algo.first_order):
        unused.append(f"first_order_epochs={config.first_order_epochs} (no exact phase)")
    if spec.adapt_mask is not None and "adapt_mask" not in accepted:
        unused.append(
            f"inner_bn={getattr(config, 'inner_bn', 'freeze')!r} (it adapts every weight)"
        )
    if unused:
        raise ValueError(f"--algo {config.algo} does not use {', '.join(unused)}.")


def _accepted(factory: Callable) -> set[str]:
    parameters = inspect.signature(factory).parameters
    names = set(parameters)
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        names |= set(inspect.signature(metax.maml).parameters)
    return names


def make_learner(config: RunConfig, spec: ModelSpec, first_order: bool) -> metax.MetaLearner:
    """``config.algo``'s learner over the family's model, at the given derivative order."""
    algo = ALGORITHMS[config.algo]
    rates = (
        {"init_lr": config.inner_lr}
        if algo.learned_rates
        else {"inner_opt": optax.sgd(config.inner_lr)}
    )
    options = {
        "num_steps": config.inner_steps,
        "first_order": first_order if algo.first_order is None else algo.first_order,
        "adapt_mask": spec.adapt_mask,
        "head_mask": spec.head_mask,
        "context_mask": spec.context_mask,
        "lam": config.lam,
        "cg_steps": config.cg_steps,
        "cg_damping": config.cg_damping,
        "lam_damping": config.lam_damping,
        **rates,
        **spec.options,
    }
    accepted = _accepted(algo.factory)
    return algo.factory(spec.loss_fn, **{k: v for k, v in options.items() if k in accepted})


def learners(config: RunConfig, spec: ModelSpec) -> metax.DerivativeOrderAnnealing:
    """The run's learners: first order for ``first_order_epochs`` epochs, then exact.

    Raises:
      ValueError: a setting the algorithm does not use (:func:`check_settings`).
    """
    check_settings(config, spec)
    return metax.derivative_order_annealing(
        lambda first_order: make_learner(config, spec, first_order),
        first_order_epochs=config.first_order_epochs,
    )


def outer_optimizer(config: RunConfig) -> optax.GradientTransformation:
    """The algorithm's outer optimizer (see :attr:`Algorithm.outer`), starting at ``outer_lr``."""
    if ALGORITHMS[config.algo].outer == "hypergradient":  # its rate is learned: no schedule
        return optax.partition(
            {
                "params": metax.hypergradient_adam(config.outer_lr, config.outer_hyper_lr),
                "rates": optax.sgd(config.hyper_lr),
            },
            metax.MetaParams(params="params", hparams="rates"),
        )
    if outer_decay(config) == "cosine":
        return optax.adam(optax.cosine_decay_schedule(config.outer_lr, config.steps, alpha=0.01))
    return optax.adam(config.outer_lr)


def outer_decay(config: RunConfig) -> str:
    """The schedule of ``config``'s outer rate: ``constant`` or ``cosine`` (``auto`` resolved)."""
    algo = ALGORITHMS[config.algo]
    return algo.decay if config.outer_decay == "auto" else config.outer_decay
