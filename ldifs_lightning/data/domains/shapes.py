"""A procedural image domain: coloured shapes on noisy, cluttered backgrounds (32x32 RGB).

Generated deterministically from a seed, so it ships as code, not files. Size, position, colour,
background, clutter and pixel noise are jittered so that the task is not trivially separable.
"""

from __future__ import annotations

import numpy as np

from ldifs_lightning.data.domains.canvas import add_clutter, add_noise, pixel_grid

SHAPE_CLASSNAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "diamond",
    "horizontal bar",
    "vertical bar",
)


def _shape_mask(kind: int, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    distance = np.hypot(dx, dy)
    thin = radius / 3.0
    masks = (
        lambda: distance <= radius,
        lambda: np.maximum(np.abs(dx), np.abs(dy)) <= radius * 0.85,
        lambda: (dy <= radius * 0.8) & (np.abs(dx) <= (dy + radius) * 0.55),
        lambda: (distance <= radius) & (distance >= radius * 0.55),
        lambda: (
            ((np.abs(dx) <= thin) & (np.abs(dy) <= radius))
            | ((np.abs(dy) <= thin) & (np.abs(dx) <= radius))
        ),
        lambda: np.abs(dx) + np.abs(dy) <= radius,
        lambda: (np.abs(dy) <= thin) & (np.abs(dx) <= radius),
        lambda: (np.abs(dx) <= thin) & (np.abs(dy) <= radius),
    )
    return masks[kind]()


def generate_shapes(
    num_samples: int, seed: int, image_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a balanced set of shape images.

    Args:
        num_samples: Number of images; labels cycle through the classes, so the set is balanced
            up to one image per class.
        seed: Seed of the generator; the same seed gives identical bytes on every machine.
        image_size: Side of the square images.

    Returns:
        ``(images, labels)``: ``uint8 [N, H, W, 3]`` and ``int64 [N]``.

    Example:
        >>> images, labels = generate_shapes(16, seed=0)
        >>> images.shape, labels[:3].tolist()
        ((16, 32, 32, 3), [0, 1, 2])
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be at least 1")
    rng = np.random.default_rng(seed)
    num_classes = len(SHAPE_CLASSNAMES)
    labels = np.arange(num_samples, dtype=np.int64) % num_classes
    grid = pixel_grid(image_size)
    ys, xs = grid
    images = np.empty((num_samples, image_size, image_size, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        background = rng.uniform(0, 110, size=3)
        # float64, unlike the glyph renderer's float32: the dtype is part of the seeded bytes.
        image = np.broadcast_to(background, (image_size, image_size, 3)).copy()
        add_clutter(image, rng, grid, max_blobs=3)
        radius = rng.uniform(0.18, 0.36) * image_size
        margin = radius * 0.8
        cx, cy = rng.uniform(margin, image_size - margin, size=2)
        mask = _shape_mask(int(label), xs - cx, ys - cy, radius)
        image[mask] = rng.uniform(120, 255, size=3)
        images[n] = add_noise(image, rng, std=18)
    return images, labels
