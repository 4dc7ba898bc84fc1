"""Random affine distortion of images, as Koch et al. (2015) augmented Omniglot.

Each image gets its own transformation, drawn on the device inside the jitted step:
a rotation, a shear, a scaling per axis and a translation, each applied with probability
1/2 (Koch et al.'s ranges by default, the translation as a fraction of the side).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates


def affine_warp(image: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
    """``image`` (``[H, W]``) moved by ``p -> matrix @ (p - c) + c + offset`` about its centre ``c``.

    Points are ``(row, column)`` pixel coordinates; each output pixel is read bilinearly
    from where the inverse map sends it, and from 0 (no ink) outside the image. The
    identity (``eye(2)``, zero offset) returns ``image`` exactly.

    Example:
      >>> import jax.numpy as jnp
      >>> image = jnp.arange(9.0).reshape(3, 3)
      >>> quarter_turn = jnp.array([[0.0, -1.0], [1.0, 0.0]])
      >>> bool((affine_warp(image, quarter_turn, jnp.zeros(2)) == jnp.rot90(image)).all())
      True
    """
    h, w = image.shape
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1)
    source = (grid - centre - offset) @ jnp.linalg.inv(matrix).T + centre  # [H, W, 2]
    return map_coordinates(image, [source[..., 0], source[..., 1]], order=1, cval=0.0)


def random_affine(
    key: jax.Array,
    images: jax.Array,
    *,
    rotation: float = 10.0,
    shear: float = 0.3,
    scale: tuple[float, float] = (0.8, 1.2),
    translation: float = 2 / 105,
    probability: float = 0.5,
) -> jax.Array:
    """Distorts each image of ``images`` (``[..., H, W]``) by its own random affine map.

    Args:
      key: the randomness; the same key distorts the same way.
      images: float ink images, 0 for no ink (what enters the image from outside it).
      rotation: largest rotation, in degrees either way.
      shear: largest shear coefficient of each axis, either way.
      scale: the range of the scale factor of each axis.
      translation: largest shift of each axis, as a fraction of the side (Koch et al.:
        2 pixels of 105).
      probability: the chance that each of the four components is applied.

    Returns:
      The distorted images, of the shape and dtype of ``images``.

    Raises:
      ValueError: a negative range, scale factors not ``0 < low <= high``, or a
        probability outside [0, 1], naming the value.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> images = jnp.zeros((4, 5, 28, 28)).at[..., 9:19, 9:19].set(1.0)
      >>> random_affine(jax.random.key(0), images).shape
      (4, 5, 28, 28)
    """
    ranges = {"rotation": rotation, "shear": shear, "translation": translation}
    for name, value in ranges.items():
        if not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    if not 0 < scale[0] <= scale[1] < math.inf:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}.")
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in [0, 1], got {probability!r}.")
    lead, (h, w) = images.shape[:-2], images.shape[-2:]
    flat = images.reshape((-1, h, w))
    keys = jax.random.split(key, flat.shape[0])

    def one(key: jax.Array, image: jax.Array) -> jax.Array:
        k_on, k_rot, k_shear, k_scale, k_shift = jax.random.split(key, 5)
        on = jax.random.bernoulli(k_on, probability, (4,))
        angle = math.radians(rotation) * jax.random.uniform(k_rot, (), minval=-1, maxval=1)
        cos, sin = jnp.cos(angle * on[0]), jnp.sin(angle * on[0])
        turn = jnp.array([[cos, -sin], [sin, cos]])
        s = on[1] * jax.random.uniform(k_shear, (2,), minval=-shear, maxval=shear)
        skew = jnp.array([[1.0, s[0]], [s[1], 1.0]])
        factors = jax.random.uniform(k_scale, (2,), minval=scale[0], maxval=scale[1])
        stretch = jnp.diag(jnp.where(on[2], factors, 1.0))
        side = jnp.array([h, w], jnp.float32)
        shift = on[3] * translation * side * jax.random.uniform(k_shift, (2,), minval=-1, maxval=1)
        warped = affine_warp(image.astype(jnp.float32), turn @ skew @ stretch, shift)
        return warped.astype(images.dtype)

    return jax.vmap(one)(keys, flat).reshape((*lead, h, w))
