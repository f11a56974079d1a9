"""STL-10: torchvision's loader over the official binary files.

Layout: ``ROOT/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt}``
(``unlabeled_X.bin`` is not needed). torchvision md5-checks all five ``.bin`` files even with
``download=False``; the package checks the requested split's only, or none with
``verify_checksums: false``.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import STL10

from ldifs_lightning.data.checksums import require_checksums
from ldifs_lightning.data.classnames.stl10 import STL10_CLASSNAMES
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import require_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import STL10_TEMPLATES


def _split_files(split: Split) -> list[tuple[str, str]]:
    if split == "train":
        return [tuple(entry) for entry in STL10.train_list[:2]]  # train_X, train_y
    return [tuple(entry) for entry in STL10.test_list]


class _STL10WithoutMD5(STL10):
    """torchvision's STL10, reading the split's files that exist without comparing md5s."""

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in _split_files(self.split))


def load_stl10(
    root: Path, split: Split, download: bool = False, *, verify_checksums: bool = True
) -> Dataset:
    """STL-10's official labelled train (5,000) or test (8,000) split, 96x96 images."""
    folder = Path(root) / STL10.base_folder
    files = [(folder / name, md5) for name, md5 in _split_files(split)]
    if download and not all(path.is_file() for path, _ in files):
        STL10(str(root), split=split, download=True)
    require_files(
        "stl10",
        [path for path, _ in files],
        f"set download: true, or extract {STL10.filename} (md5 {STL10.tgz_md5}, {STL10.url}) "
        f"into {root}",
    )
    if verify_checksums:
        require_checksums("stl10", files)
    base = _STL10WithoutMD5(str(root), split=split)
    return IndexedDataset(base, split, base.labels.tolist())


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
