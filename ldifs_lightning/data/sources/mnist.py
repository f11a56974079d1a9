"""MNIST: the raw idx files, parsed and checked by the package.

Layout: ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the four official files,
gunzipped). torchvision never md5-checks these files and parses them with asserts, so the package
reads them itself: each file's header (magic number, dimensions) must match its size exactly,
images must be 28x28, labels 0..9, and a split's two files must hold as many images as labels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import MNIST, VisionDataset

from ldifs_lightning.data.classnames.digits import DIGIT_CLASSNAMES
from ldifs_lightning.data.errors import CorruptDataFileError
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import preview, require_files, require_same_count
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import MNIST_TEMPLATES

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIDE = 28
_PREFIX = {"train": "train", "test": "t10k"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, ndim: int, kind: str, fix: str) -> np.ndarray:
    """The ``uint8`` array of an idx file with ``ndim`` dimensions, its size checked exactly.

    The idx format: the magic number ``00 00 08 <ndim>`` (``08`` = unsigned bytes), then ``ndim``
    big-endian 32-bit sizes, then the values.

    Args:
        path: The file.
        ndim: 3 for an images file, 1 for a labels file.
        kind: What the file should be, e.g. ``"an MNIST images file"``, for error messages.
        fix: What to do about a bad file; ends every error message.

    Raises:
        CorruptDataFileError: Not an idx file of ``uint8`` with ``ndim`` dimensions, or its size
            differs from what its header announces.
    """
    content = Path(path).read_bytes()
    prefix = f"mnist: {path} is not {kind}"
    magic = bytes([0, 0, 0x08, ndim])
    header_size = 4 + 4 * ndim
    reason = None
    if not content:
        reason = "the file is empty"
    elif content.startswith(_GZIP_MAGIC):
        reason = "it is still gzip-compressed (gunzip it)"
    elif not magic.startswith(content[:4]):
        reason = (
            f"it starts with {content[:4].hex(' ')}, not the idx magic number {magic.hex(' ')} "
            f"({ndim}-d array of unsigned bytes)"
        )
    elif len(content) < header_size:
        reason = f"truncated idx file (read {len(content):,} of its {header_size}-byte header)"
    if reason is not None:
        raise CorruptDataFileError(f"{prefix}: {reason}; {fix}")
    shape = tuple(int(size) for size in np.frombuffer(content[4:header_size], ">u4"))
    expected = header_size + math.prod(shape)
    if len(content) != expected:
        dims = " x ".join(f"{size:,}" for size in shape)
        problem = "truncated idx file" if len(content) < expected else "idx file too long"
        raise CorruptDataFileError(
            f"{prefix}: {problem} (read {len(content):,} of {expected:,} bytes: a header and "
            f"{dims} values, as its header says); {fix}"
        )
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape).copy()


def read_split(raw: Path, split: Split, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 28, 28] images, int64 [N] labels)`` of one split, checked."""
    images_path = raw / f"{_PREFIX[split]}-images-idx3-ubyte"
    labels_path = raw / f"{_PREFIX[split]}-labels-idx1-ubyte"
    images = read_idx(images_path, 3, "an MNIST images file", fix)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise CorruptDataFileError(
            f"mnist: {images_path} holds {images.shape[1]}x{images.shape[2]} images, MNIST's are "
            f"{IMAGE_SIDE}x{IMAGE_SIDE}; {fix}"
        )
    labels = read_idx(labels_path, 1, "an MNIST labels file", fix).astype(np.int64)
    beyond = sorted(set(labels[labels >= len(DIGIT_CLASSNAMES)].tolist()))
    if beyond:
        raise CorruptDataFileError(
            f"mnist: {labels_path} has labels {preview(beyond)} outside 0..9; {fix}"
        )
    require_same_count("mnist", (images_path, len(images)), (labels_path, len(labels)), fix)
    return images, labels


class _InMemoryMNIST(MNIST):
    """torchvision's MNIST over arrays the package read (its ``__init__`` would parse the files
    with asserts, or load ``MNIST/processed`` instead); its ``__getitem__`` makes the image."""

    def __init__(self, root: Path, train: bool, images: np.ndarray, labels: np.ndarray) -> None:
        VisionDataset.__init__(self, str(root))
        self.train = train
        self.data, self.targets = torch.from_numpy(images), torch.from_numpy(labels)


def load_mnist(root: Path, split: Split, download: bool = False) -> Dataset:
    """MNIST's official train (60,000) or test (10,000) split, images as RGB."""
    raw = Path(root) / "MNIST" / "raw"
    # All four, as the official mirrors and torchvision's download come: a copy without its test
    # files is incomplete, even for fitting.
    files = [raw / name for name in RAW_FILES]
    if download and not all(path.is_file() for path in files):
        MNIST(str(root), train=split == "train", download=True)
    require_files(
        "mnist",
        files,
        f"set download: true, or put the four gunzipped idx files ({', '.join(RAW_FILES)}; "
        f"{MNIST.mirrors[0]}) in {raw}",
    )
    fix = (
        f"delete it and set download: true, or put the gunzipped official file "
        f"({MNIST.mirrors[0]}) in {raw} again"
    )
    images, labels = read_split(raw, split, fix)
    base = _InMemoryMNIST(root, split == "train", images, labels)
    return IndexedDataset(base, split, labels.tolist())


register_dataset(
    DatasetInfo(
        name="mnist",
        classnames=DIGIT_CLASSNAMES,
        templates=MNIST_TEMPLATES,
        load=load_mnist,
        description="MNIST: 70k 28x28 grey handwritten digits (torchvision downloads it)",
        split_source="official: 60,000 train / 10,000 test",
    )
)
