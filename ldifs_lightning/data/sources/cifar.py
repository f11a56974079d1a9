"""CIFAR-10 and CIFAR-100: the official python pickles, read as data by the package.

Layout: ``ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``ROOT/cifar-100-python/{train, test, meta}``, as the official archives extract.

torchvision's loaders read these files with Python's full ``pickle``, which runs any code a
crafted file names; the package reads them itself with ``RestrictedUnpickler`` (numpy arrays,
lists, strings and numbers only), checks what they hold (``uint8`` rows of 3,072 values, one int
label per row, the class list) and hands the arrays to torchvision's class for its image
conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100, VisionDataset

from ldifs_lightning.data.checksums import require_checksums
from ldifs_lightning.data.classnames.cifar import CIFAR10_CLASSNAMES, CIFAR100_CLASSNAMES
from ldifs_lightning.data.errors import CorruptDataFileError, IncompleteDatasetError
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import preview, require_files, require_same_count
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.safe_pickle import load_data_pickle
from ldifs_lightning.data.templates import CIFAR10_TEMPLATES, CIFAR100_TEMPLATES

#: One CIFAR image as a batch row: 1024 red, then 1024 green, then 1024 blue values.
ROW_VALUES = 3 * 32 * 32


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, dict):
        return f"a dict with keys {preview(sorted(str(key) for key in value))}"
    return f"a {type(value).__name__}"


def _int_labels(labels: Any) -> list[int] | None:
    """``labels`` as ints, or None unless they are a list, tuple or 1-D array of integers."""
    if isinstance(labels, np.ndarray):
        is_int = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
        return labels.tolist() if is_int else None
    if isinstance(labels, list | tuple) and all(
        isinstance(label, int | np.integer) and not isinstance(label, bool) for label in labels
    ):
        return [int(label) for label in labels]
    return None


def read_batch(dataset: str, path: Path, label_key: str, fix: str) -> tuple[np.ndarray, list[int]]:
    """The ``uint8 [N, 3072]`` rows and ``N`` labels of one CIFAR batch file, checked.

    Args:
        dataset: Registry name, the prefix of error messages.
        path: The batch file (``data_batch_1``, ``test_batch``, ``train``, ...).
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).
        fix: What to do about a bad file; ends every error message.

    Raises:
        CorruptDataFileError: The file is truncated, not a pickle, holds something else than a
            CIFAR batch, or holds a different number of images and labels.
        UnsafePickleError: The pickle asks for a global outside the restricted unpickler's list.
    """
    content = load_data_pickle(path, dataset=dataset, kind="a CIFAR batch", fix=fix)
    prefix = f"{dataset}: {path} is not a CIFAR batch"
    if not isinstance(content, dict) or not {"data", label_key} <= content.keys():
        raise CorruptDataFileError(
            f"{prefix}: it holds {_describe(content)}, not a dict with 'data' and "
            f"'{label_key}'; {fix}"
        )
    data, labels = content["data"], _int_labels(content[label_key])
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == ROW_VALUES
    ):
        raise CorruptDataFileError(
            f"{prefix}: its 'data' is {_describe(data)}, not uint8 rows of {ROW_VALUES:,} values "
            f"(one 32x32 RGB image per row); {fix}"
        )
    if labels is None:
        raise CorruptDataFileError(
            f"{prefix}: its '{label_key}' is {_describe(content[label_key])}, not a list of int "
            f"labels; {fix}"
        )
    require_same_count(dataset, (path, len(data)), (path, len(labels)), fix)
    return data, labels


def _read_classes(dataset: str, path: Path, key: str, fix: str) -> tuple[str, ...]:
    content = load_data_pickle(path, dataset=dataset, kind="a CIFAR meta file", fix=fix)
    classes = content.get(key) if isinstance(content, dict) else None
    if not (isinstance(classes, list | tuple) and all(isinstance(name, str) for name in classes)):
        raise CorruptDataFileError(
            f"{dataset}: {path} is not a CIFAR meta file: it holds {_describe(content)} without "
            f"a list of class names under '{key}'; {fix}"
        )
    return tuple(name.replace("_", " ") for name in classes)


class _InMemory:
    """A torchvision CIFAR class over arrays read by the package (its own ``__init__`` would
    unpickle the files with the full ``pickle``); its ``__getitem__`` turns a row into an image.

    Module-level classes, so that DataLoader workers started with ``spawn`` can pickle them.
    """

    def __init__(self, root: Path, train: bool, data: np.ndarray, targets: list[int]) -> None:
        VisionDataset.__init__(self, str(root))
        self.train, self.data, self.targets = train, data, targets


class _InMemoryCIFAR10(_InMemory, CIFAR10):
    pass


class _InMemoryCIFAR100(_InMemory, CIFAR100):
    pass


def _loader(
    name: str,
    torchvision_class: type[CIFAR10],
    in_memory: Callable[[Path, bool, np.ndarray, list[int]], Dataset],
    classnames: tuple[str, ...],
    label_key: str,
) -> Callable[..., Dataset]:
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
            # Safe: torchvision md5-checks every file against the official ones before unpickling.
            torchvision_class(str(root), train=split == "train", download=True)
        archive = (
            f"{torchvision_class.filename} (md5 {torchvision_class.tgz_md5}, "
            f"{torchvision_class.url})"
        )
        paths = [path for path, _ in files]
        require_files(name, paths, f"set download: true, or extract {archive} into {root}")
        if verify_checksums:
            require_checksums(name, files)
        fix = f"delete it and set download: true, or extract {archive} into {root} again"
        meta_path = folder / meta["filename"]
        found = _read_classes(name, meta_path, meta["key"], fix)
        if found != classnames:
            raise IncompleteDatasetError(
                f"{name}: {meta_path} lists {len(found)} classes that are not "
                f"{name}'s {len(classnames)} (first: {found[:3]}); is root the right dataset?"
            )
        batches = [read_batch(name, folder / file, label_key, fix) for file, _ in listed]
        rows = np.concatenate([data for data, _ in batches])
        targets = [label for _, labels in batches for label in labels]
        images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-major rows -> HWC
        base = in_memory(root, split == "train", images, targets)
        return IndexedDataset(base, split, targets)

    return load


load_cifar10 = _loader("cifar10", CIFAR10, _InMemoryCIFAR10, CIFAR10_CLASSNAMES, "labels")
load_cifar100 = _loader("cifar100", CIFAR100, _InMemoryCIFAR100, CIFAR100_CLASSNAMES, "fine_labels")

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
