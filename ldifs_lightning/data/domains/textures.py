"""A procedural image domain: eight kinds of texture (32x32 RGB), generated from a seed.

Period, phase, orientation jitter, colours and pixel noise vary per image, and a random patch of
each image is covered by plain background, so the task is not trivially separable.
"""

from __future__ import annotations

import numpy as np

from ldifs_lightning.data.domains.canvas import add_noise, pixel_grid

TEXTURE_CLASSNAMES: tuple[str, ...] = (
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "polka dots",
    "grid lines",
    "concentric rings",
    "zigzag",
)


def _pattern(
    kind: int, x: np.ndarray, y: np.ndarray, period: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean foreground mask of texture ``kind`` on rotated/jittered coordinates."""
    phase = rng.uniform(0, period)
    u, v = x + phase, y + rng.uniform(0, period)
    half = period / 2
    if kind == 0:
        return (v % period) < half
    if kind == 1:
        return (u % period) < half
    if kind == 2:
        sign = 1 if rng.random() < 0.5 else -1
        return ((u + sign * v) % period) < half
    if kind == 3:
        return ((u // half + v // half) % 2) == 0
    if kind == 4:
        du, dv = (u % period) - half, (v % period) - half
        return np.hypot(du, dv) <= period * 0.28
    if kind == 5:
        return ((u % period) < period * 0.22) | ((v % period) < period * 0.22)
    if kind == 6:
        cx, cy = rng.uniform(8, 24, size=2)
        return (np.hypot(x - cx, y - cy) % period) < half
    # zigzag: horizontal stripes displaced by a triangle wave
    amplitude = rng.uniform(0.25, 0.45) * period
    tri = np.abs((u % period) - half) / half * 2 - 1
    return ((v + amplitude * tri) % period) < half


def generate_textures(
    num_samples: int, seed: int, image_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """A balanced set of texture images.

    Args:
        num_samples: Number of images; labels cycle through the classes.
        seed: Seed of the generator; the same seed gives identical bytes.
        image_size: Side of the square images.

    Returns:
        ``(images, labels)``: ``uint8 [N, H, W, 3]`` and ``int64 [N]``.

    Example:
        >>> images, labels = generate_textures(16, seed=0)
        >>> images.shape, labels[:3].tolist()
        ((16, 32, 32, 3), [0, 1, 2])
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be at least 1")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples, dtype=np.int64) % len(TEXTURE_CLASSNAMES)
    ys, xs = pixel_grid(image_size)
    images = np.empty((num_samples, image_size, image_size, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        angle = rng.uniform(-0.25, 0.25)  # small rotation, radians
        x = xs * np.cos(angle) - ys * np.sin(angle)
        y = xs * np.sin(angle) + ys * np.cos(angle)
        period = rng.uniform(5.0, 11.0)
        mask = _pattern(int(label), x, y, period, rng)
        background = rng.uniform(0, 255, size=3)
        foreground = rng.uniform(0, 255, size=3)
        while np.abs(foreground - background).sum() < 150:
            foreground = rng.uniform(0, 255, size=3)
        image = np.where(mask[..., None], foreground, background).astype(np.float32)
        w, h = rng.integers(6, 16, size=2)  # occluding patch of plain colour
        x0, y0 = rng.integers(0, image_size - w), rng.integers(0, image_size - h)
        image[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, size=3)
        images[n] = add_noise(image, rng, std=30)
    return images, labels
