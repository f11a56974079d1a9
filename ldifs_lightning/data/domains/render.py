"""Render grey-level glyphs (handwritten digits, clothing photos) as jittered 32x32 RGB images.

Every random choice comes from one ``numpy.random.default_rng(seed)``, in a fixed order, so the
same glyphs and seed give identical bytes. Size, position, foreground and background colour,
clutter and pixel noise are jittered, so that a linear probe on good features is not at 100%.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ldifs_lightning.data.domains.canvas import add_clutter, add_noise, pixel_grid


def render_glyphs(
    glyphs: np.ndarray,
    seed: int,
    image_size: int = 32,
    size_range: tuple[float, float] = (0.6, 0.95),
    noise: float = 16.0,
    max_clutter: int = 3,
) -> np.ndarray:
    """Colour and place grey-level glyphs on noisy backgrounds.

    Args:
        glyphs: ``uint8 [N, h, w]``, 0 = background, 255 = full ink.
        seed: Seed of every random choice.
        image_size: Side of the square output.
        size_range: Rendered glyph side as a fraction of ``image_size`` (uniform).
        noise: Standard deviation of the added Gaussian pixel noise (0..255 scale).
        max_clutter: Up to this many small blobs of random colour in the background.

    Returns:
        ``uint8 [N, image_size, image_size, 3]``.

    Example:
        >>> render_glyphs(np.full((2, 8, 8), 255, np.uint8), seed=0).shape
        (2, 32, 32, 3)
    """
    rng = np.random.default_rng(seed)
    grid = pixel_grid(image_size)
    out = np.empty((len(glyphs), image_size, image_size, 3), dtype=np.uint8)
    for n, glyph in enumerate(glyphs):
        background = rng.uniform(0, 120, size=3)
        foreground = rng.uniform(130, 255, size=3)
        image = np.broadcast_to(background, (image_size, image_size, 3)).astype(np.float32)
        add_clutter(image, rng, grid, max_blobs=max_clutter)
        side = round(rng.uniform(*size_range) * image_size)
        x0, y0 = rng.integers(0, image_size - side + 1, size=2)
        ink = np.asarray(
            Image.fromarray(glyph).resize((side, side), Image.Resampling.BILINEAR), np.float32
        )
        alpha = (ink / 255.0)[..., None]
        patch = image[y0 : y0 + side, x0 : x0 + side]
        image[y0 : y0 + side, x0 : x0 + side] = patch * (1 - alpha) + foreground * alpha
        out[n] = add_noise(image, rng, std=noise)
    return out
