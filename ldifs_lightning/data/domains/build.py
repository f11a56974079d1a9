"""Rebuild the shipped glyph files from their public sources (maintainers only).

    python -m ldifs_lightning.data.domains.build

- ``files/digits.npz``: scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten
  Digits" test set (``sklearn.datasets.load_digits``; 1797 8x8 images, 17 grey levels), 170 per
  class (the first 170 of each class, in scikit-learn's order), scaled to 0..255.
- ``files/fashion.npz``: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``): the first 240 images of each class of the official
  train split and the first 80 of each class of the official test split.

Then it rewrites ``files/SHA256SUMS``. The rendering into 32x32 RGB happens at load time.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

FILES = Path(__file__).parent / "files"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGITS_PER_CLASS = 170
FASHION_TRAIN_PER_CLASS, FASHION_TEST_PER_CLASS = 240, 80


def _first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    keep = [np.flatnonzero(labels == c)[:per_class] for c in range(int(labels.max()) + 1)]
    return np.sort(np.concatenate(keep))


def _idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def build_digits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = _first_per_class(digits.target, DIGITS_PER_CLASS)
    images = np.round(digits.images[keep] * 255 / 16).astype(np.uint8)
    labels = digits.target[keep].astype(np.uint8)
    np.savez_compressed(FILES / "digits.npz", images=images, labels=labels)


def build_fashion() -> None:
    arrays = {}
    for split, prefix, per_class in [
        ("train", "train", FASHION_TRAIN_PER_CLASS),
        ("test", "t10k", FASHION_TEST_PER_CLASS),
    ]:
        images = _idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
        labels = _idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        keep = _first_per_class(labels, per_class)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[keep], labels[keep]
    np.savez_compressed(FILES / "fashion.npz", **arrays)


def write_checksums() -> None:
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}"
        for path in sorted(FILES.glob("*.npz"))
    ]
    (FILES / "SHA256SUMS").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    build_digits()
    build_fashion()
    write_checksums()
