"""Class splits of a few-shot dataset: MAML's random split and alphabet-disjoint splits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from metax.data.omniglot import Omniglot

SPLITS = ("maml", "alphabet")


class Split(NamedTuple):
    """Disjoint class indices for meta-training, validation and test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def check_disjoint(self) -> None:
        """Raises if two parts share a class."""
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = np.intersect1d(getattr(self, a), getattr(self, b))
            if shared.size:
                raise ValueError(f"{a} and {b} share classes {shared[:10].tolist()}...")


def maml_split(
    num_classes: int, *, num_train: int = 1200, num_val: int = 100, seed: int = 1
) -> Split:
    """Finn et al.'s Omniglot split of shuffled characters into train, validation, test.

    The first ``num_train`` shuffled characters are meta-training (the last
    ``num_val`` of them held out for validation), the rest test. With Omniglot's 1,623 characters: 1,100 train, 100 validation, 423 test, all
    alphabets mixed.
    """
    if num_train >= num_classes:
        raise ValueError(f"num_train={num_train} leaves no test classes out of {num_classes}.")
    if not 0 <= num_val < num_train:
        raise ValueError(f"num_val must be in [0, num_train), got {num_val}.")
    order = np.random.default_rng(seed).permutation(num_classes)
    split = Split(
        train=np.sort(order[: num_train - num_val]),
        val=np.sort(order[num_train - num_val : num_train]),
        test=np.sort(order[num_train:]),
    )
    split.check_disjoint()
    return split


def alphabet_split(
    data: Omniglot,
    *,
    test_alphabets: Sequence[str] | None = None,
    val_alphabets: Sequence[str] = (),
) -> Split:
    """Splits by whole alphabets, so no alphabet is shared between parts (Vinyals-style).

    Args:
      data: the dataset (needs ``alphabet`` and ``alphabet_names``).
      test_alphabets: test alphabets; default: Lake et al.'s 20 evaluation alphabets
        (``is_background == False``).
      val_alphabets: alphabets held out for validation (taken from the rest).

    Raises:
      ValueError: an unknown alphabet name, or an empty part.
    """
    names = np.asarray(data.alphabet_names)
    alpha_of_class = names[data.alphabet]
    if test_alphabets is None:
        test_mask = ~data.is_background
    else:
        unknown = sorted(set(test_alphabets) - set(names))
        if unknown:
            raise ValueError(f"unknown alphabets {unknown}; known: {sorted(names)}")
        test_mask = np.isin(alpha_of_class, list(test_alphabets))
    unknown = sorted(set(val_alphabets) - set(names))
    if unknown:
        raise ValueError(f"unknown alphabets {unknown}; known: {sorted(names)}")
    val_mask = np.isin(alpha_of_class, list(val_alphabets)) & ~test_mask
    train_mask = ~test_mask & ~val_mask
    split = Split(
        train=np.flatnonzero(train_mask),
        val=np.flatnonzero(val_mask),
        test=np.flatnonzero(test_mask),
    )
    if not split.train.size or not split.test.size:
        raise ValueError("an alphabet split needs at least one train and one test alphabet.")
    split.check_disjoint()
    return split


def make_split(name: str, data: Omniglot) -> Split:
    """The split called ``name``: ``maml`` (:func:`maml_split`) or ``alphabet``.

    ``alphabet`` tests on Lake et al.'s evaluation alphabets and validates on the
    first five background alphabets by name.
    """
    if name == "maml":
        return maml_split(data.num_classes)
    if name != "alphabet":
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
    names = sorted({data.alphabet_names[a] for a in np.unique(data.alphabet[data.is_background])})
    return alphabet_split(data, val_alphabets=names[:5])
