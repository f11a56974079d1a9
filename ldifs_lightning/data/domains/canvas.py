"""Drawing steps shared by the generated 32x32 domains: pixel grid, clutter blobs, pixel noise.

Each step draws from the caller's ``numpy.random.Generator`` in a fixed order, so a domain built
from them gives the same bytes for the same seed on every run.
"""

from __future__ import annotations

import numpy as np


def pixel_grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ys, xs)``: the float32 row and column coordinates of a square image's pixels.

    Example:
        >>> ys, xs = pixel_grid(4)
        >>> ys.shape, float(xs[0, 3]), float(ys[3, 0])
        ((4, 4), 3.0, 3.0)
    """
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    return ys, xs


def add_clutter(
    image: np.ndarray, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray], max_blobs: int
) -> None:
    """Paint 0 to ``max_blobs`` small discs (radius 1 to 2.5 pixels) of random colour, in place.

    Args:
        image: ``float [H, W, 3]`` on the 0..255 scale.
        rng: Draws, per disc: centre, radius, colour.
        grid: ``pixel_grid(H)``.
        max_blobs: Largest number of discs.

    Example:
        >>> image = np.zeros((8, 8, 3))
        >>> add_clutter(image, np.random.default_rng(1), pixel_grid(8), max_blobs=3)
        >>> image.shape
        (8, 8, 3)
    """
    ys, xs = grid
    image_size = image.shape[0]
    for _ in range(rng.integers(0, max_blobs + 1)):
        cx, cy = rng.uniform(0, image_size, size=2)
        blob = np.hypot(xs - cx, ys - cy) <= rng.uniform(1.0, 2.5)
        image[blob] = rng.uniform(0, 255, size=3)


def add_noise(image: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """``image`` plus Gaussian pixel noise, clipped to 0..255, as ``uint8``.

    The noise is added in place, in ``image``'s own float dtype (part of each domain's bytes).

    Example:
        >>> add_noise(np.full((2, 2, 3), 300.0), np.random.default_rng(0), std=1.0).max()
        np.uint8(255)
    """
    image += rng.normal(0, std, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
