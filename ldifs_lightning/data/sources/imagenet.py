"""ImageNet-1k (ILSVRC 2012): torchvision's loader; the files must be provided by hand.

ImageNet needs a licence, so ``download: true`` cannot fetch it. Place in ``ROOT/imagenet`` either
the official archives (torchvision extracts them on first use, needs scipy for the devkit) or
their extracted form::

    ROOT/imagenet/meta.bin               made by torchvision from ILSVRC2012_devkit_t12.tar.gz
    ROOT/imagenet/train/<wnid>/*.JPEG    1,000 folders, 1,281,167 images (ILSVRC2012_img_train.tar)
    ROOT/imagenet/val/<wnid>/*.JPEG      1,000 folders, 50,000 images (ILSVRC2012_img_val.tar)

Test is the official validation set, as usual for ImageNet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageNet
from torchvision.datasets.imagenet import ARCHIVE_META, META_FILE

from ldifs_lightning.data.classnames.imagenet import IMAGENET_CLASSNAMES
from ldifs_lightning.data.errors import DatasetNotFoundError, IncompleteDatasetError
from ldifs_lightning.data.images import ImageFileDataset
from ldifs_lightning.data.layout import preview, require_class_folders, require_labels
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.scipy_check import require_scipy
from ldifs_lightning.data.templates import IMAGENET_TEMPLATES

_FOLDER = {"train": "train", "test": "val"}


def _archive(kind: str) -> str:
    name, md5 = ARCHIVE_META[kind]
    return f"{name} (md5 {md5})"


def load_imagenet(root: Path, split: Split, download: bool = False) -> Dataset:
    """ImageNet's official train (1,281,167 images) or validation (50,000, used as test) split."""
    base_folder = Path(root) / "imagenet"
    folder_name = _FOLDER[split]  # also the key of its archive in torchvision's ARCHIVE_META
    folder = base_folder / folder_name
    has_meta = (base_folder / META_FILE).is_file()
    has_devkit = (base_folder / ARCHIVE_META["devkit"][0]).is_file()
    has_images = folder.is_dir() or (base_folder / ARCHIVE_META[folder_name][0]).is_file()
    missing = []
    if not (has_meta or has_devkit):
        missing.append(f"{META_FILE} or {_archive('devkit')}")
    if not has_images:
        missing.append(f"{folder_name}/<wnid>/*.JPEG or {_archive(folder_name)}")
    if missing:
        raise DatasetNotFoundError(
            f"imagenet: {base_folder} lacks {' and '.join(missing)}; ImageNet cannot be downloaded "
            f"automatically (licence): get the archives from https://image-net.org and put them "
            f"there (torchvision extracts them on first use)"
        )
    if has_meta and folder.is_dir():
        wnids = sorted(torch.load(base_folder / META_FILE, weights_only=True)[0])
        if len(wnids) != len(IMAGENET_CLASSNAMES):
            raise IncompleteDatasetError(
                f"imagenet: {base_folder / META_FILE} lists {len(wnids)} classes, expected "
                f"{len(IMAGENET_CLASSNAMES)}: {preview(wnids)}"
            )
        require_class_folders("imagenet", folder, wnids)
    if not has_meta:
        require_scipy("imagenet")  # torchvision reads the devkit's meta.mat to make meta.bin
    base = ImageNet(str(base_folder), split=folder_name)
    if len(base.wnids) != len(IMAGENET_CLASSNAMES):
        raise IncompleteDatasetError(
            f"imagenet: {len(base.wnids)} of {len(IMAGENET_CLASSNAMES)} class folders found "
            f"under {folder}"
        )
    labels = [label for _, label in base.samples]
    require_labels("imagenet", labels, IMAGENET_CLASSNAMES, folder)
    files = [(Path(path).relative_to(base_folder), label) for path, label in base.samples]
    return ImageFileDataset(base_folder, files)


register_dataset(
    DatasetInfo(
        name="imagenet",
        classnames=IMAGENET_CLASSNAMES,
        templates=IMAGENET_TEMPLATES,
        load=load_imagenet,
        description="ImageNet-1k (ILSVRC 2012): 1.33M photos of 1,000 classes (manual download)",
        split_source="official: 1,281,167 train / 50,000 validation (used as test)",
    )
)
