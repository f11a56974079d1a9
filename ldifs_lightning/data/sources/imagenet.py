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

import contextlib
import tarfile
import zlib
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageNet
from torchvision.datasets.imagenet import ARCHIVE_META, META_FILE

from ldifs_lightning.data.classnames.imagenet import IMAGENET_CLASSNAMES
from ldifs_lightning.data.errors import (
    CorruptDataFileError,
    DatasetNotFoundError,
    IncompleteDatasetError,
)
from ldifs_lightning.data.layout import preview, require_class_folders
from ldifs_lightning.data.listing import checked_image_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import IMAGENET_TEMPLATES

_FOLDER = {"train": "train", "test": "val"}


def _archive(kind: str) -> str:
    name, md5 = ARCHIVE_META[kind]
    return f"{name} (md5 {md5})"


def _torch_load_reason(error: Exception) -> str:
    """The useful sentence of a ``torch.load`` error (its messages run over several paragraphs)."""
    text, refused = str(error), str(error).startswith("Weights only load failed")
    if refused:  # a paragraph of advice, the reason, then a link to the documentation
        paragraphs = [part.strip() for part in text.split("\n\n")[1:]]
        text = " ".join(
            part for part in paragraphs if not part.startswith("Check the documentation")
        )
    sentence = " ".join(text.split()).split(". ")[0].rstrip(".") or type(error).__name__
    return f"torch.load(weights_only=True) refused it: {sentence}" if refused else sentence


def read_meta_wnids(path: Path) -> list[str]:
    """The sorted wnids of torchvision's ``meta.bin`` (``(wnid_to_classes, val_wnids)``).

    Read with ``torch.load(weights_only=True)``: tensors, containers, strings and numbers only, so
    a crafted file cannot run code; a file that is not such a pair fails with one line.
    """
    fix = (
        f"delete it and put {_archive('devkit')} in {path.parent} (torchvision rebuilds "
        f"{META_FILE} from it)"
    )
    prefix = f"imagenet: {path} is not torchvision's ImageNet {META_FILE}"
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    # torch.load raises several types for a file it cannot read (UnpicklingError, RuntimeError
    # from the zip reader, EOFError, ...); all mean "bad file".
    except Exception as error:
        reason = "the file is empty" if path.stat().st_size == 0 else _torch_load_reason(error)
        raise CorruptDataFileError(f"{prefix}: {reason}; {fix}") from error
    if not (
        isinstance(meta, tuple | list)
        and len(meta) == 2
        and isinstance(meta[0], dict)
        and all(isinstance(wnid, str) for wnid in meta[0])
    ):
        raise CorruptDataFileError(
            f"{prefix}: it holds a {type(meta).__name__}, not the pair (wnid_to_classes, "
            f"val_wnids); {fix}"
        )
    return sorted(meta[0])


def _archive_errors() -> tuple[type[BaseException], ...]:
    """What torchvision's archive handling raises for a bad archive: its md5 check
    (RuntimeError), tarfile and gzip, and scipy reading the devkit's .mat files."""
    errors: list[type[BaseException]] = [RuntimeError, tarfile.TarError, EOFError, zlib.error]
    errors += [ValueError, KeyError]  # scipy.io.loadmat on a malformed file, a missing variable
    with contextlib.suppress(ImportError):
        from scipy.io.matlab import MatReadError

        errors.append(MatReadError)
    return tuple(errors)


def _from_archives(base_folder: Path, folder_name: str, step: str) -> Dataset:
    """torchvision's ImageNet, which first builds meta.bin and/or extracts the images from the
    archives; a bad archive fails with one line (OSError and other failures keep theirs)."""
    try:
        return ImageNet(str(base_folder), split=folder_name)
    except ImportError as error:  # the devkit's .mat files are read with scipy
        raise CorruptDataFileError(
            f"imagenet: torchvision needs scipy to build {META_FILE} from {_archive('devkit')} "
            f"({error}); pip install scipy, or put a {META_FILE} in {base_folder}"
        ) from error
    except _archive_errors() as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
        raise CorruptDataFileError(
            f"imagenet: torchvision could not {step} in {base_folder}: {first_line}; check the "
            f"archives there against their md5 ({_archive('devkit')}, {_archive(folder_name)})"
        ) from error


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
    if has_meta:
        wnids = read_meta_wnids(base_folder / META_FILE)
        if len(wnids) != len(IMAGENET_CLASSNAMES):
            raise IncompleteDatasetError(
                f"imagenet: {base_folder / META_FILE} lists {len(wnids)} classes, expected "
                f"{len(IMAGENET_CLASSNAMES)}: {preview(wnids)}"
            )
        if folder.is_dir():
            require_class_folders("imagenet", folder, wnids)
    steps = [f"build {META_FILE} from the devkit"] if not has_meta else []
    steps += [f"extract {folder_name}/"] if not folder.is_dir() else []
    if not steps:  # meta.bin and the image folder exist: torchvision only lists them
        base = ImageNet(str(base_folder), split=folder_name)
    else:
        base = _from_archives(base_folder, folder_name, " or ".join(steps))
    if len(base.wnids) != len(IMAGENET_CLASSNAMES):
        raise IncompleteDatasetError(
            f"imagenet: {len(base.wnids)} of {len(IMAGENET_CLASSNAMES)} class folders found "
            f"under {folder}"
        )
    return checked_image_files("imagenet", base_folder, base.samples, IMAGENET_CLASSNAMES, folder)


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
