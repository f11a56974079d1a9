"""SVHN (cropped digits): the official ``.mat`` files, read and checked here (needs scipy).

Layout: ``ROOT/svhn/{train,test}_32x32.mat``. torchvision md5-checks the file even with
``download=False``; the package checks it itself (``verify_checksums``, or skipped to read a user's
copy), reads it with ``scipy.io.loadmat`` (MATLAB data only, nothing in the file is executed) and
checks that it holds ``X`` (``uint8 [32, 32, 3, N]``) and ``y`` (``N`` labels in 1..10, 10 being
digit 0) before torchvision's class serves the images.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets import SVHN, VisionDataset

from ldifs_lightning.data.checksums import require_checksums
from ldifs_lightning.data.classnames.digits import DIGIT_CLASSNAMES
from ldifs_lightning.data.errors import CorruptDataFileError
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import preview, require_files, require_same_count
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import SVHN_TEMPLATES

_MI_COMPRESSED = 15  # element type of zlib-compressed data, the only one not padded to 8 bytes


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return "missing" if value is None else f"a {type(value).__name__}"


def _declared_size(path: Path) -> int | None:
    """Where a MATLAB v5 file's top-level elements end, or None without a v5 header.

    A v5 file is a 128-byte header, then elements of an 8-byte tag (type, byte count) and their
    data, uncompressed ones padded to 8 bytes; a size past the file's end means it was cut short.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(128)
        if not header.startswith(b"MATLAB 5.0"):
            return None
        if len(header) < 128:
            return 128
        order = "<" if header[126:128] == b"IM" else ">"
        offset = 128
        while offset < size:
            handle.seek(offset)
            tag = handle.read(8)
            if len(tag) < 8:
                return offset + 8
            kind, nbytes = struct.unpack(f"{order}II", tag)
            offset += 8 + (nbytes if kind == _MI_COMPRESSED else -(-nbytes // 8) * 8)
    return offset


def _load_mat(path: Path, fix: str) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(path, variable_names=("X", "y"))
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    # scipy raises many types for bytes that are not a MATLAB file (ValueError, OSError,
    # MatReadError, IndexError, NotImplementedError for v7.3/HDF5, ...); all mean "bad file".
    except Exception as error:
        size, declared = path.stat().st_size, _declared_size(path)
        if size == 0:
            reason = "the file is empty"
        elif declared is not None and declared > size:
            reason = (
                f"truncated MATLAB file (its {size:,} bytes end inside a variable that ends at "
                f"byte {declared:,})"
            )
        else:
            detail = " ".join(str(error).split()) or type(error).__name__
            reason = f"not a MATLAB file scipy can read (scipy: {detail})"
        raise CorruptDataFileError(
            f"svhn: {path} is not an SVHN .mat file: {reason}; {fix}"
        ) from error


def read_mat(path: Path, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [32, 32, 3, N] images, int64 [N] labels in 0..9)`` of an SVHN ``.mat``, checked.

    Raises:
        CorruptDataFileError: scipy cannot read the file, ``X`` or ``y`` is missing or of the wrong
            shape, they hold different numbers of samples, or a label is outside 1..10.
    """
    content = _load_mat(path, fix)
    images, digits = content.get("X"), content.get("y")
    prefix = f"svhn: {path} is not an SVHN .mat file"
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 4
        and images.shape[:3] == (32, 32, 3)
    ):
        raise CorruptDataFileError(
            f"{prefix}: its X is {_describe(images)}, not uint8 [32, 32, 3, N] images; {fix}"
        )
    if not (isinstance(digits, np.ndarray) and digits.dtype.kind in "uif"):
        raise CorruptDataFileError(f"{prefix}: its y is {_describe(digits)}, not labels; {fix}")
    require_same_count("svhn", (path, images.shape[3]), (path, digits.size), fix)
    digits = digits.reshape(-1)
    valid = (digits >= 1) & (digits <= 10) & (digits == np.round(digits))
    if not valid.all():
        bad = sorted(set(digits[~valid].tolist()))
        raise CorruptDataFileError(
            f"{prefix}: its y has labels {preview(bad)} outside 1..10 (10 is digit 0); {fix}"
        )
    labels = digits.astype(np.int64) % 10  # SVHN writes digit 0 as 10
    return images, labels


class _InMemorySVHN(SVHN):
    """torchvision's SVHN over arrays the package read (its ``__init__`` would md5-check and read
    the file itself); its ``__getitem__`` makes the image."""

    def __init__(self, root: Path, split: Split, images: np.ndarray, labels: np.ndarray) -> None:
        VisionDataset.__init__(self, str(root))
        self.split = split
        self.data = np.transpose(images, (3, 2, 0, 1))  # [H, W, C, N] -> torchvision's [N, C, H, W]
        self.labels = labels


def load_svhn(
    root: Path, split: Split, download: bool = False, *, verify_checksums: bool = True
) -> Dataset:
    """SVHN's official train (73,257) or test (26,032) split; label ``i`` is digit ``i``."""
    folder = Path(root) / "svhn"
    url, filename, md5 = SVHN.split_list[split]
    path = folder / filename
    if download and not path.is_file():
        SVHN(str(folder), split=split, download=True)
    require_files("svhn", [path], f"set download: true, or download {url} (md5 {md5}) to {path}")
    if verify_checksums:
        require_checksums("svhn", [(path, md5)])
    images, labels = read_mat(path, f"delete it and set download: true, or download {url} again")
    base = _InMemorySVHN(folder, split, images, labels)
    return IndexedDataset(base, split, labels.tolist())


register_dataset(
    DatasetInfo(
        name="svhn",
        classnames=DIGIT_CLASSNAMES,
        templates=SVHN_TEMPLATES,
        load=load_svhn,
        description="SVHN: 32x32 crops of house-number digits (torchvision downloads it)",
        split_source="official: 73,257 train / 26,032 test ('extra' unused)",
        load_options=("verify_checksums",),
    )
)
