"""Omniglot as in-memory arrays, from an npz, PNG folders (or their zip) or TFDS.

Every source ends in the same :class:`Omniglot`: ``images`` of shape
``[classes, drawers, size, size]`` as uint8 with **ink = 255, background = 0** (the
polarity conversion lives in :func:`ink_from_white_background`, the only place
that knows the sources store white background as True/1), plus per-class
metadata. Resizing to ``size x size`` (28 by default) happens once per source and
is cached as an npz.
"""

from __future__ import annotations

import hashlib
import os
import socket
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

NPZ_KEYS = ("images", "char_id", "alphabet", "alphabet_names", "is_background")


class Omniglot(NamedTuple):
    """Omniglot characters as arrays.

    Attributes:
      images: ``uint8 [classes, drawers, size, size]``, ink 255, background 0.
      alphabet: ``int [classes]`` index into ``alphabet_names``.
      alphabet_names: the alphabet names.
      char_id: ``int [classes]`` the global 1-based character id (TFDS label + 1).
      is_background: ``bool [classes]`` Lake et al.'s background (True) / evaluation set.
    """

    images: np.ndarray
    alphabet: np.ndarray
    alphabet_names: tuple[str, ...]
    char_id: np.ndarray
    is_background: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of characters."""
        return self.images.shape[0]


def ink_from_white_background(white: np.ndarray) -> np.ndarray:
    """Converts images whose background is white (True / 1 / 255) to ink-is-high floats in [0, 1].

    The npz stores bool with True = background, TFDS uint8 {0, 1} with 1 = background, the
    PNGs 1-bit with white background: all go through here.
    """
    white = np.asarray(white)
    top = 1.0 if white.dtype == bool or white.max() <= 1 else 255.0
    return 1.0 - white.astype(np.float32) / top


def model_input(images):
    """``uint8 [..., H, W]`` ink images as the models' ``float32 [..., H, W, 1]`` in [0, 1]."""
    import jax.numpy as jnp

    return jnp.asarray(images).astype(jnp.float32)[..., None] / 255.0


def resize_ink(ink: np.ndarray, size: int) -> np.ndarray:
    """Area-resizes ``[..., H, W]`` ink images in [0, 1] to ``size x size`` uint8 (ink 255)."""
    import jax
    import jax.numpy as jnp

    lead, (h, w) = ink.shape[:-2], ink.shape[-2:]
    flat = ink.reshape((-1, h, w))
    out = []
    for start in range(0, flat.shape[0], 4096):  # bounded memory
        chunk = jnp.asarray(flat[start : start + 4096])
        small = jax.image.resize(chunk, (chunk.shape[0], size, size), "linear", antialias=True)
        out.append(np.asarray(jnp.clip(jnp.round(small * 255.0), 0, 255).astype(jnp.uint8)))
    return np.concatenate(out).reshape((*lead, size, size))


def _cache_path(tag: str, size: int, cache_dir: str | Path | None) -> Path:
    root = Path(cache_dir or os.environ.get("METAX_CACHE", Path.home() / ".cache" / "metax"))
    return root / f"omniglot-{tag}-{size}px.npz"


def _source_tag(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _save_cache(path: Path, data: Omniglot) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # processes may load at once
    np.savez(
        tmp,
        images=data.images,
        alphabet=data.alphabet,
        char_id=data.char_id,
        is_background=data.is_background,
        alphabet_names=np.asarray(data.alphabet_names),
    )
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache


def _load_cache(path: Path) -> Omniglot | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            return Omniglot(
                f["images"],
                f["alphabet"],
                tuple(str(a) for a in f["alphabet_names"]),
                f["char_id"],
                f["is_background"],
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # a damaged cache is rebuilt


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Reads and checks the ``omniglot_105.npz`` layout (see ``shared/data/omniglot/README.md``).

    Args:
      path: the npz with keys ``images`` (bool ``[C, D, H, W]``, True = white background),
        ``char_id``, ``alphabet``, ``alphabet_names``, ``is_background``.

    Returns:
      The arrays under those keys, as stored (images at full size, white background).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not an npz, a missing key or a wrongly shaped array, named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Omniglot npz at {path}")
    try:
        f = np.load(path)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable npz file: {e}") from e
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not an npz archive of {list(NPZ_KEYS)}.")
    with f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(
                f"{path} lacks the keys {missing}; expected {list(NPZ_KEYS)} "
                f"(images bool [classes, drawers, H, W], True = background); found {f.files}."
            )
        arrays = {k: f[k] for k in NPZ_KEYS}
    images, names, alphabet = arrays["images"], arrays["alphabet_names"], arrays["alphabet"]
    if images.ndim != 4:
        raise ValueError(
            f"{path}: images must be [classes, drawers, H, W], got shape {images.shape}."
        )
    for key in ("char_id", "alphabet", "is_background"):
        if arrays[key].shape != images.shape[:1]:
            raise ValueError(
                f"{path}: {key} must hold one value per class ({images.shape[0]}), "
                f"got shape {arrays[key].shape}."
            )
    if alphabet.size and not 0 <= alphabet.min() <= alphabet.max() < len(names):
        raise ValueError(
            f"{path}: alphabet indexes alphabet_names ({len(names)} names), got values "
            f"{alphabet.min()}..{alphabet.max()}."
        )
    return arrays


def load_npz(path: str | Path, *, size: int = 28, cache_dir: str | Path | None = None) -> Omniglot:
    """Loads the ``omniglot_105.npz`` layout, resized, through :func:`read_npz`'s checks.

    Args:
      path: the npz (keys and format: :func:`read_npz`).
      size: output side length.
      cache_dir: where the resized copy is cached (default ``$METAX_CACHE`` or
        ``~/.cache/metax``).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: a missing key or a wrongly shaped array, named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Omniglot npz at {path}")
    cache = _cache_path(_source_tag(path), size, cache_dir)
    cached = _load_cache(cache)
    if cached is not None:
        return cached
    f = read_npz(path)
    data = Omniglot(
        images=resize_ink(ink_from_white_background(f["images"]), size),
        alphabet=f["alphabet"].astype(np.int32),
        alphabet_names=tuple(str(a) for a in f["alphabet_names"]),
        char_id=f["char_id"].astype(np.int32),
        is_background=f["is_background"].astype(bool),
    )
    _save_cache(cache, data)
    return data


TFDS_SPLITS = ("train", "test", "small1", "small2")


def _network_reachable(
    host: str = "raw.githubusercontent.com", port: int = 443, timeout: float = 3.0
) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_tfds(
    split: str = "train",
    *,
    data_dir: str | Path | None = None,
    size: int = 28,
    download: bool = True,
) -> Omniglot:
    """Loads Omniglot through tensorflow-datasets (``pip install 'metax-learn[tfds]'``).

    Reads with ``tfds.data_source`` (array_record files; no TensorFlow needed to read).
    If the dataset is not prepared in ``data_dir`` it is downloaded and prepared once
    (that step needs network and TensorFlow); with no network it fails at once
    instead of after minutes of retries. Offline, point :func:`load_png_folders` at
    the original zips instead.

    Args:
      split: ``train`` (background, 964 characters), ``test`` (evaluation, 659),
        ``small1`` or ``small2``.
      data_dir: TFDS data directory (default: TFDS's).
      size: output side length.
      download: allow downloading and preparing when not prepared.

    Raises:
      ImportError: tensorflow-datasets is not installed.
      RuntimeError: not prepared and no network (or ``download=False``).
    """
    if split not in TFDS_SPLITS:
        raise ValueError(f"unknown Omniglot TFDS split {split!r}; choose one of {TFDS_SPLITS}.")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "loading Omniglot through TFDS needs tensorflow-datasets: pip install 'metax-learn[tfds]' "
            "(or use metax.data.load_npz / load_png_folders for local files)."
        ) from e
    kwargs = {"file_format": "array_record"}
    builder = tfds.builder("omniglot", data_dir=data_dir, **kwargs)
    if not builder.is_prepared():
        if not download or not _network_reachable():
            raise RuntimeError(
                f"Omniglot is not prepared in the TFDS data_dir {builder.data_dir} and "
                + ("download=False" if not download else "the network is unreachable")
                + "; prepare it on a machine with network, or load local files with "
                "metax.data.load_npz(...) / load_png_folders(<the original zips>)."
            )
        builder.download_and_prepare()
    source = tfds.data_source("omniglot", split=split, data_dir=data_dir, builder_kwargs=kwargs)
    names = tuple(builder.info.features["alphabet"].names)
    return _group_examples(source, size=size, alphabet_names=names, is_background=split != "test")


def _group_examples(
    examples, *, size: int, alphabet_names: tuple[str, ...], is_background: bool
) -> Omniglot:
    """Groups TFDS examples (image, label, alphabet) into ``[classes, drawers, ...]``."""
    by_label: dict[int, list[np.ndarray]] = {}
    alphabet_of: dict[int, int] = {}
    for i in range(len(examples)):
        ex = examples[i]
        label = int(ex["label"])
        image = np.asarray(ex["image"])
        by_label.setdefault(label, []).append(image[..., 0] if image.ndim == 3 else image)
        alphabet_of[label] = int(ex["alphabet"])
    labels = sorted(by_label)
    counts = {len(by_label[lab]) for lab in labels}
    if len(counts) != 1:
        raise ValueError(
            f"TFDS Omniglot classes have different numbers of drawings: {sorted(counts)}"
        )
    white = np.stack([np.stack(by_label[lab]) for lab in labels])
    alphabets = np.asarray([alphabet_of[lab] for lab in labels], np.int32)
    return Omniglot(
        images=resize_ink(ink_from_white_background(white), size),
        alphabet=alphabets,
        alphabet_names=alphabet_names,
        char_id=np.asarray(labels, np.int32) + 1,
        is_background=np.full(len(labels), is_background),
    )
