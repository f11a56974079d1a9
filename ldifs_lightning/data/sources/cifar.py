"""CIFAR-10 and CIFAR-100: torchvision's loaders over the python pickles.

Layout: ``ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``ROOT/cifar-100-python/{train, test, meta}``, as the official archives extract.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from ldifs_lightning.data.checksums import require_checksums
from ldifs_lightning.data.classnames.cifar import CIFAR10_CLASSNAMES, CIFAR100_CLASSNAMES
from ldifs_lightning.data.errors import IncompleteDatasetError
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import require_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import CIFAR10_TEMPLATES, CIFAR100_TEMPLATES


def _without_md5(torchvision_class: type[CIFAR10]) -> type[CIFAR10]:
    """The torchvision class, reading files that exist without comparing their md5.

    torchvision md5-checks every batch, train and test, even with ``download=False``; the package
    checks the requested split itself (``verify_checksums``), so a user's copy can be used.
    """

    class WithoutMD5(torchvision_class):
        def _split_files(self) -> list[str]:
            listed = self.train_list if self.train else self.test_list
            return [name for name, _ in listed] + [self.meta["filename"]]

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name in self._split_files())

        def _load_meta(self) -> None:
            with (Path(self.root) / self.base_folder / self.meta["filename"]).open("rb") as file:
                self.classes = pickle.load(file, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    WithoutMD5.__name__ = torchvision_class.__name__
    return WithoutMD5


def _loader(name: str, torchvision_class: type[CIFAR10], classnames: tuple[str, ...]):
    reader = _without_md5(torchvision_class)

    def load(
        root: Path, split: Split, download: bool = False, *, verify_checksums: bool = True
    ) -> Dataset:
        folder = Path(root) / torchvision_class.base_folder
        listed = torchvision_class.train_list if split == "train" else torchvision_class.test_list
        meta = torchvision_class.meta
        files = [(folder / file, md5) for file, md5 in listed] + [
            (folder / meta["filename"], meta["md5"])
        ]
        if download and not all(path.is_file() for path, _ in files):
            torchvision_class(str(root), train=split == "train", download=True)
        require_files(
            name,
            [path for path, _ in files],
            f"set download: true, or extract {torchvision_class.filename} (md5 "
            f"{torchvision_class.tgz_md5}, {torchvision_class.url}) into {root}",
        )
        if verify_checksums:
            require_checksums(name, files)
        base = reader(str(root), train=split == "train")
        found = tuple(label.replace("_", " ") for label in base.classes)
        if found != classnames:
            raise IncompleteDatasetError(
                f"{name}: {folder / meta['filename']} lists {len(found)} classes that are not "
                f"{name}'s {len(classnames)} (first: {found[:3]}); is root the right dataset?"
            )
        return IndexedDataset(base, split, base.targets)

    return load


load_cifar10 = _loader("cifar10", CIFAR10, CIFAR10_CLASSNAMES)
load_cifar100 = _loader("cifar100", CIFAR100, CIFAR100_CLASSNAMES)

register_dataset(
    DatasetInfo(
        name="cifar10",
        classnames=CIFAR10_CLASSNAMES,
        templates=CIFAR10_TEMPLATES,
        load=load_cifar10,
        description="CIFAR-10: 60k 32x32 photos of 10 object classes (torchvision downloads it)",
        split_source="official: 50,000 train / 10,000 test",
        load_options=("verify_checksums",),
    )
)
register_dataset(
    DatasetInfo(
        name="cifar100",
        classnames=CIFAR100_CLASSNAMES,
        templates=CIFAR100_TEMPLATES,
        load=load_cifar100,
        description="CIFAR-100: 60k 32x32 photos of 100 fine classes (torchvision downloads it)",
        split_source="official: 50,000 train / 10,000 test",
        load_options=("verify_checksums",),
    )
)
