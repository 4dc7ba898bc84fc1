"""One entry point for every Omniglot source: an npz, PNG folders or zips, or TFDS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metax.data.omniglot import Omniglot, load_npz, load_tfds
from metax.data.png import load_png_folders


def load_omniglot(source: str | Path, *, size: int = 28) -> Omniglot:
    """Loads Omniglot from an npz, a PNG folder or zip, or ``"tfds"`` (train and test pooled).

    Raises:
      FileNotFoundError: nothing at ``source``, naming it and the accepted forms.
    """
    if source == "tfds":
        train, test = load_tfds("train", size=size), load_tfds("test", size=size)
        return Omniglot(
            images=np.concatenate([train.images, test.images]),
            alphabet=np.concatenate([train.alphabet, test.alphabet]),
            alphabet_names=train.alphabet_names,
            char_id=np.concatenate([train.char_id, test.char_id]),
            is_background=np.concatenate(
                [np.ones(train.num_classes, bool), np.zeros(test.num_classes, bool)]
            ),
        )
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"no Omniglot data at {path}; pass an npz (the omniglot_105.npz layout), "
            "a folder or zip of <Alphabet>/characterNN/*.png, or 'tfds'."
        )
    if path.suffix.lower() == ".npz":
        return load_npz(path, size=size)
    return load_png_folders(path, size=size)
