"""On-device N-way K-shot episode sampling with ``jax.random``.

The class pool lives on the device as ``uint8 [classes, drawers, H, W]`` (28x28
Omniglot is ~25 MB), and episodes are drawn inside the jitted meta-step: one XLA
program per meta-step, no host work.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metax._src.base import Task
from metax.data.distort import random_affine
from metax.data.omniglot import model_input


class EpisodeSpec(NamedTuple):
    """Shape of an episode.

    Attributes:
      ways: classes per episode (N).
      shots: support examples per class (K).
      queries: query examples per class.
      rotate: treat each class rotated by 0, 90, 180, 270 degrees as four classes
        (Omniglot's augmentation of meta-training classes; off for val/test).
      within_alphabet: draw all classes of an episode from one alphabet, as in Lake
        et al.'s one-shot task (the alphabet drawn uniformly among those with at
        least ``ways`` characters; with ``rotate``, each character in a random
        rotation); otherwise from the whole pool.
      distort: distort every image by its own random affine map, as Koch et al.
        (2015) augmented Omniglot (:func:`metax.data.distort.random_affine`); off for
        val/test.
    """

    ways: int
    shots: int
    queries: int
    rotate: bool = False
    within_alphabet: bool = False
    distort: bool = False


def check_episode_spec(
    spec: EpisodeSpec,
    num_classes: int,
    num_drawers: int,
    *,
    name: str = "pool",
    alphabet: np.ndarray | None = None,
    alphabet_names: tuple[str, ...] | None = None,
) -> None:
    """Raises a ValueError, before anything is compiled, if ``spec`` cannot be sampled.

    Args:
      spec: the episode shape.
      num_classes: classes in the pool.
      num_drawers: examples per class.
      name: the pool's name in messages.
      alphabet: ``int [num_classes]`` alphabet of each class (within-alphabet episodes).
      alphabet_names: names of the alphabet ids, for messages.
    """
    for field in ("ways", "shots", "queries"):
        value = getattr(spec, field)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{field} must be a positive integer, got {value!r}.")
    pool = num_classes * (4 if spec.rotate else 1)
    if spec.within_alphabet:
        if alphabet is None or len(alphabet) != num_classes:
            raise ValueError(
                f"within-alphabet episodes need the alphabet of each class of the {name}."
            )
        ids, counts = np.unique(np.asarray(alphabet), return_counts=True)
        largest = int(np.argmax(counts))
        pool = int(counts[largest])  # rotations never make one character two classes here
        label = (
            alphabet_names[ids[largest]]
            if alphabet_names is not None
            else f"alphabet {ids[largest]}"
        )
        if spec.ways > pool:
            raise ValueError(
                f"ways={spec.ways} is more than the largest alphabet of the {name} has classes: "
                f"{label}, {counts[largest]} characters."
            )
    if spec.ways > pool:
        raise ValueError(
            f"ways={spec.ways} is more than the {pool} classes of the {name} "
            f"({num_classes} characters{' x 4 rotations' if spec.rotate else ''})."
        )
    if spec.shots + spec.queries > num_drawers:
        raise ValueError(
            f"shots + queries = {spec.shots} + {spec.queries} = {spec.shots + spec.queries} is more than "
            f"the {num_drawers} examples per class of the {name}."
        )


def sample_episode(
    key: jax.Array, images: jax.Array, spec: EpisodeSpec, *, alphabet: np.ndarray | None = None
) -> Task:
    """Draws one episode from ``images`` (``uint8 [classes, drawers, H, W]``).

    Classes are distinct within the episode (drawn without replacement); with
    ``spec.within_alphabet`` they all come from one alphabet of ``alphabet`` (a host
    array, ``int [classes]``), drawn uniformly among those with enough classes; each class
    gets ``shots + queries`` distinct drawers, the first ``shots`` for the support
    set; labels ``0..ways-1`` go to the classes in their (random) drawing order, so
    the class-to-label map is a fresh random permutation every episode. With
    ``spec.distort`` the images are then distorted, from a key of their own: the
    classes, drawers and labels are those of the same key without it.

    Returns:
      A :class:`metax.Task`; ``support`` is ``{"x": float32 [ways*shots, H, W, 1] in
      [0, 1], "y": int32 [ways*shots]}``, ``query`` likewise with ``ways*queries``.
    """
    num_classes, num_drawers = images.shape[:2]
    k_distort = jax.random.fold_in(key, 1) if spec.distort else None  # before key is split
    if spec.within_alphabet:
        key, k_alphabet = jax.random.split(key)
    k_cls, k_draw = jax.random.split(key)
    if spec.within_alphabet:
        cls, rot = _within_alphabet(k_alphabet, k_cls, alphabet, spec)
    else:
        picked = _distinct(k_cls, num_classes * (4 if spec.rotate else 1), spec.ways)
        cls, rot = picked % num_classes, picked // num_classes
    n = spec.shots + spec.queries
    drawers = jax.vmap(lambda k: _distinct(k, num_drawers, n))(jax.random.split(k_draw, spec.ways))
    x = model_input(images[cls[:, None], drawers])  # [ways, n, H, W, 1]
    if spec.rotate:
        x = jax.vmap(_rotate)(x[..., 0], rot)[..., None]
    if spec.distort:
        x = random_affine(k_distort, x[..., 0])[..., None]
    y = jnp.broadcast_to(jnp.arange(spec.ways, dtype=jnp.int32)[:, None], (spec.ways, n))

    def part(lo, hi):
        xs = x[:, lo:hi].reshape((-1, *x.shape[2:]))
        return {"x": xs, "y": y[:, lo:hi].reshape(-1)}

    return Task(support=part(0, spec.shots), query=part(spec.shots, n))


def _within_alphabet(
    k_alphabet: jax.Array, k_cls: jax.Array, alphabet: np.ndarray | None, spec: EpisodeSpec
) -> tuple[jax.Array, jax.Array]:
    """``spec.ways`` distinct characters of one alphabet with enough of them, and rotations.

    With ``spec.rotate`` each character gets a random rotation: an episode never holds
    one character twice, in two rotations, as two classes.
    """
    if alphabet is None:
        raise ValueError("within-alphabet episodes need the alphabet of each class.")
    _, group = np.unique(np.asarray(alphabet), return_inverse=True)
    members = [np.flatnonzero(group == g) for g in range(group.max() + 1)]
    members = [m for m in members if len(m) >= spec.ways]
    if not members:
        raise ValueError(f"no alphabet has ways={spec.ways} classes.")
    width = max(len(m) for m in members)
    table = np.stack([np.pad(m, (0, width - len(m))) for m in members])  # [alphabets, width]
    counts = np.array([len(m) for m in members])
    k_alphabet, k_rot = jax.random.split(k_alphabet)
    a = jax.random.randint(k_alphabet, (), 0, len(members))
    score = jax.random.uniform(k_cls, (width,))
    score = jnp.where(jnp.arange(width) < jnp.asarray(counts)[a], score, -1.0)
    cls = jnp.asarray(table)[a, jax.lax.top_k(score, spec.ways)[1]]
    rot = jax.random.randint(k_rot, (spec.ways,), 0, 4 if spec.rotate else 1)
    return cls, rot


def _distinct(key: jax.Array, n: int, k: int) -> jax.Array:
    """``k`` distinct integers of ``[0, n)`` in random order: the top ``k`` of ``n`` uniforms.

    Unlike ``jax.random.choice(replace=False)`` (a full sort of ``n`` keys), this is a
    partial selection, which matters when thousands of (rotated) classes are drawn
    from for every task of a meta-batch.
    """
    return jax.lax.top_k(jax.random.uniform(key, (n,)), k)[1]


def _rotate(x: jax.Array, k: jax.Array) -> jax.Array:
    """Rotates ``[..., H, W]`` images by ``k * 90`` degrees (``k`` traced)."""
    return jax.lax.switch(k, [lambda a, r=r: jnp.rot90(a, r, axes=(-2, -1)) for r in range(4)], x)


def sample_episodes(
    key: jax.Array,
    images: jax.Array,
    spec: EpisodeSpec,
    num_tasks: int,
    *,
    alphabet: np.ndarray | None = None,
) -> Task:
    """``num_tasks`` independent episodes stacked on a leading task axis.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> pool = jnp.zeros((30, 20, 28, 28), jnp.uint8)
      >>> t = sample_episodes(jax.random.key(0), pool, EpisodeSpec(5, 1, 15), 4)
      >>> t.support["x"].shape, t.query["y"].shape
      ((4, 5, 28, 28, 1), (4, 75))
    """
    keys = jax.random.split(key, num_tasks)
    return jax.vmap(lambda k: sample_episode(k, images, spec, alphabet=alphabet))(keys)
