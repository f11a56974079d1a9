"""Checks that a dataset's folder layout is complete, with one-line errors that say what is missing.

Every check runs before any image is decoded, so a wrong ``root`` fails at once, not mid-epoch;
``require_same_count`` checks that a split's image and label arrays agree once they are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ldifs_lightning.data.errors import (
    CorruptDataFileError,
    DatasetNotFoundError,
    IncompleteDatasetError,
)


def preview(items: Sequence[object], limit: int = 5) -> str:
    """``[a, b, c]`` or ``[a, b, c, d, e, ...] (12 in all)`` for long lists."""
    shown = ", ".join(str(item) for item in items[:limit])
    if len(items) <= limit:
        return f"[{shown}]"
    return f"[{shown}, ...] ({len(items)} in all)"


def require_files(dataset: str, paths: Iterable[Path], how_to_get: str) -> None:
    """Raise ``DatasetNotFoundError`` naming the missing files and ``how_to_get`` them."""
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise DatasetNotFoundError(f"{dataset}: missing {preview(missing)}; {how_to_get}")


def require_class_folders(
    dataset: str, folder: Path, expected: Sequence[str], exact: bool = True
) -> None:
    """Every expected class folder exists under ``folder`` and holds something (and, if ``exact``,
    there is no other folder).

    Extra folders matter where labels come from the sorted folder names: one stray folder shifts
    every label after it.
    """
    found = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    missing = [name for name in expected if not (folder / name).is_dir()]
    if missing:
        raise IncompleteDatasetError(
            f"{dataset}: {len(expected) - len(missing)} of {len(expected)} class folders found "
            f"under {folder}; missing: {preview(missing)}"
        )
    empty = [name for name in expected if not any((folder / name).iterdir())]
    if empty:
        raise IncompleteDatasetError(
            f"{dataset}: {len(empty)} of {len(expected)} class folders under {folder} are empty: "
            f"{preview(empty)}"
        )
    extra = sorted(set(found) - set(expected)) if exact else []
    if extra:
        raise IncompleteDatasetError(
            f"{dataset}: unexpected folders under {folder}: {preview(extra)}; only the "
            f"{len(expected)} class folders may be there (labels follow their sorted names)"
        )


def require_listed_files(dataset: str, paths: Sequence[Path], listing: Path | str) -> None:
    """Every image that an annotation file lists exists."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise IncompleteDatasetError(
            f"{dataset}: {len(missing)} of {len(paths)} images listed in {listing} are missing: "
            f"{preview(missing, limit=3)}"
        )


def require_labels(
    dataset: str, labels: Sequence[int], classnames: Sequence[str], source: Path | str
) -> None:
    """Every label names a class, and every class has at least one sample.

    An empty class usually means an incomplete copy; a label past the class list, a wrong file.
    """
    beyond = sorted({label for label in labels if not 0 <= label < len(classnames)})
    if beyond:
        raise IncompleteDatasetError(
            f"{dataset}: {source} has labels {preview(beyond)} outside 0..{len(classnames) - 1} "
            f"({len(classnames)} classes)"
        )
    present = set(labels)
    empty = [name for index, name in enumerate(classnames) if index not in present]
    if empty:
        raise IncompleteDatasetError(
            f"{dataset}: {len(empty)} of {len(classnames)} classes have no images in {source}: "
            f"{preview(empty)}"
        )


def require_same_count(
    dataset: str,
    images: tuple[Path | str, int],
    labels: tuple[Path | str, int],
    fix: str,
) -> None:
    """Raise ``CorruptDataFileError`` when a split's images and labels differ in number.

    Checked when the arrays are read, so a mismatch fails at ``setup``, not at the first missing
    label mid-epoch.

    Args:
        dataset: Registry name, the prefix of the message.
        images: The file holding the images, and how many it holds.
        labels: The file holding the labels (may be the same file), and how many it holds.
        fix: What to do about it; ends the message.
    """
    (image_source, num_images), (label_source, num_labels) = images, labels
    if num_images != num_labels:
        where = (
            f"{image_source} holds {num_images:,} images and {num_labels:,} labels"
            if image_source == label_source
            else f"{image_source} holds {num_images:,} images but {label_source} holds "
            f"{num_labels:,} labels"
        )
        raise CorruptDataFileError(f"{dataset}: {where}; every image needs one label; {fix}")
