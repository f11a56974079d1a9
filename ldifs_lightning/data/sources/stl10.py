"""STL-10: the official binary files, read and checked by the package.

Layout: ``ROOT/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``
(``unlabeled_X.bin`` is not needed). torchvision md5-checks all five ``.bin`` files even with
``download=False``; the package checks the requested split's only, or none with
``verify_checksums: false``. ``*_X.bin`` holds raw ``uint8`` images of 3 x 96 x 96 values
(column-major), ``*_y.bin`` one byte per image, labels 1..10; the package checks that the images
file is a whole number of images, the labels are 1..10 and the two files agree in count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets import STL10, VisionDataset

from ldifs_lightning.data.checksums import require_checksums
from ldifs_lightning.data.classnames.stl10 import STL10_CLASSNAMES
from ldifs_lightning.data.errors import CorruptDataFileError
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import preview, require_files, require_same_count
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import STL10_TEMPLATES

#: Bytes of one image in ``*_X.bin``: 3 channels of 96 x 96.
IMAGE_BYTES = 3 * 96 * 96


def _split_files(split: Split) -> list[tuple[str, str]]:
    if split == "train":
        return [(name, md5) for name, md5 in STL10.train_list[:2]]  # train_X, train_y
    return [(name, md5) for name, md5 in STL10.test_list]


def read_split(images_path: Path, labels_path: Path, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 3, 96, 96] images as torchvision holds them, int64 [N] labels in 0..9)``.

    Raises:
        CorruptDataFileError: The images file is not a whole number of images, a label is outside
            1..10, or the files hold different numbers of images and labels.
    """
    size = images_path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise CorruptDataFileError(
            f"stl10: {images_path} is not an STL-10 images file: its {size:,} bytes are not a "
            f"whole number of 96x96 RGB images ({IMAGE_BYTES:,} bytes each), so it is truncated "
            f"or another file; {fix}"
        )
    labels = np.fromfile(labels_path, dtype=np.uint8).astype(np.int64)
    beyond = sorted(set(labels[(labels < 1) | (labels > 10)].tolist()))
    if beyond:
        raise CorruptDataFileError(
            f"stl10: {labels_path} is not an STL-10 labels file: it has labels {preview(beyond)} "
            f"outside 1..10 (one byte per image); {fix}"
        )
    require_same_count("stl10", (images_path, size // IMAGE_BYTES), (labels_path, len(labels)), fix)
    images = np.fromfile(images_path, dtype=np.uint8).reshape(-1, 3, 96, 96)
    return images.transpose(0, 1, 3, 2), labels - 1  # column-major in the file; 0-based labels


class _InMemorySTL10(STL10):
    """torchvision's STL10 over arrays the package read (its ``__init__`` would md5-check all the
    files and read them itself); its ``__getitem__`` makes the image."""

    def __init__(self, root: Path, split: Split, images: np.ndarray, labels: np.ndarray) -> None:
        VisionDataset.__init__(self, str(root))
        self.split, self.data, self.labels = split, images, labels


def load_stl10(
    root: Path, split: Split, download: bool = False, *, verify_checksums: bool = True
) -> Dataset:
    """STL-10's official labelled train (5,000) or test (8,000) split, 96x96 images."""
    folder = Path(root) / STL10.base_folder
    files = [(folder / name, md5) for name, md5 in _split_files(split)]
    if download and not all(path.is_file() for path, _ in files):
        STL10(str(root), split=split, download=True)
    archive = f"{STL10.filename} (md5 {STL10.tgz_md5}, {STL10.url})"
    require_files(
        "stl10",
        [path for path, _ in files],
        f"set download: true, or extract {archive} into {root}",
    )
    if verify_checksums:
        require_checksums("stl10", files)
    fix = f"delete it and set download: true, or extract {archive} into {root} again"
    (images_path, _), (labels_path, _) = files
    images, labels = read_split(images_path, labels_path, fix)
    base = _InMemorySTL10(root, split, images, labels)
    return IndexedDataset(base, split, labels.tolist())


register_dataset(
    DatasetInfo(
        name="stl10",
        classnames=STL10_CLASSNAMES,
        templates=STL10_TEMPLATES,
        load=load_stl10,
        description="STL-10: 96x96 photos of 10 object classes (torchvision downloads it)",
        split_source="official: 5,000 train / 8,000 test (unlabeled split unused)",
        load_options=("verify_checksums",),
    )
)
