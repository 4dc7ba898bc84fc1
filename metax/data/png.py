"""Omniglot from PNG files: the original ``<Alphabet>/characterNN/*.png`` folders or zips."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from metax.data.omniglot import (
    Omniglot,
    _cache_path,
    _load_cache,
    _save_cache,
    _source_tag,
    ink_from_white_background,
    resize_ink,
)

_CHAR_DIR = re.compile(r"^character(\d+)$")


def _png_entries(root: Path) -> tuple[dict[tuple[str, int], list[tuple[str, bytes]]], set]:
    """``{(alphabet, character): [(name, png bytes), ...]}`` from a folder or zip.

    Also returns the characters under an ``images_evaluation*`` folder or zip: Lake et
    al.'s evaluation alphabets, the test part of the ``alphabet`` split.
    """
    entries: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
    evaluation: set[tuple[str, int]] = set()

    def add(parts: list[str], name: str, read) -> None:
        if len(parts) < 3 or not parts[-1].lower().endswith(".png"):
            return
        match = _CHAR_DIR.match(parts[-2])
        if match is None:
            return
        key = (parts[-3], int(match.group(1)))
        entries.setdefault(key, []).append((name, read()))
        if any(p.startswith("images_evaluation") for p in [root.name, *parts[:-3]]):
            evaluation.add(key)

    if root.is_file() and zipfile.is_zipfile(root):
        with zipfile.ZipFile(root) as z:
            for info in z.infolist():
                if not info.is_dir():
                    add(
                        info.filename.split("/"),
                        f"{root}:{info.filename}",
                        lambda i=info: z.read(i),
                    )
        return entries, evaluation
    if root.is_file():
        raise ValueError(f"{root} is neither a folder nor a zip of Omniglot PNGs.")
    if not root.is_dir():
        raise FileNotFoundError(f"no Omniglot folder or zip at {root}")
    for png in sorted(root.rglob("*.png")):
        add(list(png.relative_to(root).parts), str(png), png.read_bytes)
    return entries, evaluation


def decode_png(name: str, raw: bytes) -> np.ndarray:
    """The grey levels of a PNG's bytes; a ValueError names ``name`` if they are unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"corrupt or unreadable PNG: {name} ({e})") from e


def decode_pngs(named: Iterable[tuple[str, bytes]]) -> np.ndarray:
    """``[N, H, W]`` grey levels of ``(name, PNG bytes)`` pairs, all of one size.

    Raises:
      ValueError: a corrupt PNG, or one of another size than the first, named.
    """
    images: list[np.ndarray] = []
    for name, raw in named:
        img = decode_png(name, raw)
        if images and img.shape != images[0].shape:
            expected = images[0].shape[::-1]
            raise ValueError(
                f"mixed image sizes: {name} is {img.shape[::-1]}, expected {expected}."
            )
        images.append(img)
    return np.stack(images)


def load_png_folders(
    roots: str | Path | Iterable[str | Path], *, size: int = 28, cache_dir: str | Path | None = None
) -> Omniglot:
    """Loads ``<Alphabet>/characterNN/*.png`` trees (the original archives' layout).

    Each root may be a folder or one of the original zips (e.g.
    ``images_background_small1.zip``). Characters appearing in several roots (Greek
    and Latin are in both small archives) are kept once.

    Args:
      roots: one or more folders or zips.
      size: output side length.
      cache_dir: where the resized copy is cached.

    Raises:
      FileNotFoundError: a root is missing, or holds no ``<Alphabet>/characterNN/*.png``.
      ValueError: a corrupt PNG, images of different sizes, or characters with
        different numbers of drawers, naming the file.
    """
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    if not roots:
        raise ValueError("no Omniglot folders given.")
    cacheable = all(r.is_file() for r in roots)  # zips do not change under us; folders may
    cache = None
    if cacheable:
        tag = hashlib.sha256("|".join(_source_tag(r) for r in roots).encode()).hexdigest()[:16]
        cache = _cache_path(f"png2-{tag}", size, cache_dir)  # png2: with evaluation alphabets
        cached = _load_cache(cache)
        if cached is not None:
            return cached
    merged: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
    evaluation: set[tuple[str, int]] = set()
    for root in roots:
        entries, in_evaluation = _png_entries(root)
        evaluation |= in_evaluation
        if not entries:
            raise FileNotFoundError(
                f"{root} holds no Omniglot images; expected <Alphabet>/characterNN/*.png "
                "(e.g. Greek/character01/0394_01.png)."
            )
        for key, files in entries.items():
            merged.setdefault(key, files)
    keys = sorted(merged)
    counts = Counter(len(merged[k]) for k in keys)
    if len(counts) != 1:
        usual = counts.most_common(1)[0][0]
        odd = {
            f"{a}/character{c:02d}": len(merged[(a, c)])
            for a, c in keys
            if len(merged[(a, c)]) != usual
        }
        raise ValueError(
            f"every character needs the same number of drawings ({usual} for most); these differ: {odd}"
        )
    flat = decode_pngs(f for key in keys for f in sorted(merged[key]))
    white = flat.reshape(len(keys), -1, *flat.shape[1:])  # [characters, drawers, H, W]
    alphabet_names = tuple(sorted({a for a, _ in keys}))
    data = Omniglot(
        images=resize_ink(ink_from_white_background(white), size),
        alphabet=np.asarray([alphabet_names.index(a) for a, _ in keys], np.int32),
        alphabet_names=alphabet_names,
        char_id=np.arange(1, len(keys) + 1, dtype=np.int32),
        is_background=np.asarray([k not in evaluation for k in keys], bool),
    )
    if cache is not None:
        _save_cache(cache, data)
    return data
