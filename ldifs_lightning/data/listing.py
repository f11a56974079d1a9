"""From a loader's file listing to the split it returns: the checks, the dataset, the split.

The image-file loaders (DTD, EuroSAT, GTSRB, ImageNet, RESISC45, Stanford Cars, SUN397, image
folders) all end the same way once they have torchvision's ``(path, label)`` listing; these are
those steps, so every loader checks in the same order and says the same things.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ldifs_lightning.data.images import ImageFileDataset
from ldifs_lightning.data.layout import require_labels, require_listed_files
from ldifs_lightning.data.registry import Split
from ldifs_lightning.data.splits import split_held_out


def checked_image_files(
    dataset: str,
    root: Path,
    samples: Sequence[tuple[str | Path, int]],
    classnames: Sequence[str] | None,
    source: Path | str,
    listing: Path | str | None = None,
) -> ImageFileDataset:
    """The listed images as an ``ImageFileDataset`` with ids relative to ``root``, once checked.

    Args:
        dataset: Registry name, the prefix of error messages.
        root: The dataset's folder; every path in ``samples`` lies under it.
        samples: ``(path, label)`` pairs, e.g. torchvision's ``ImageFolder.samples``.
        classnames: The class names: every label must name one and every class must have an
            image; None skips this (a split that may lack classes).
        source: Where the labels come from (a folder or annotation file), named in errors.
        listing: The annotation file that lists ``samples``: every listed image must exist; None
            when the images were found by listing folders.

    Raises:
        IncompleteDatasetError: A listed image is missing, a label is out of range, or a class
            has no image.

    Example:
        >>> root = Path("data/eurosat")
        >>> samples = [(root / "2750/River/1.jpg", 0)]
        >>> checked_image_files("eurosat", root, samples, ["river"], root).sample_ids
        ['2750/River/1.jpg']
    """
    if listing is not None:
        require_listed_files(dataset, [Path(path) for path, _ in samples], listing)
    if classnames is not None:
        require_labels(dataset, [int(label) for _, label in samples], classnames, source)
    return ImageFileDataset.from_paths(root, samples)


def held_out_split(
    dataset: ImageFileDataset, split: Split, fraction: float, seed: int
) -> ImageFileDataset:
    """``split`` of a dataset without an official test split: ``fraction`` of each class, ranked
    by ``sha256(f"{seed}:{sample_id}")``, is test and the rest train (see ``split_held_out``).

    Example:
        >>> files = [(f"{c}/{i}.jpg", c) for c in range(2) for i in range(5)]
        >>> len(held_out_split(ImageFileDataset(Path("x"), files), "test", 0.2, seed=0))
        2
    """
    train, test = split_held_out(dataset.sample_ids, dataset.targets, fraction, seed)
    return dataset.select(train if split == "train" else test)


def listed_split(
    dataset_name: str, dataset: ImageFileDataset, paths: Iterable[Path], listing: Path
) -> ImageFileDataset:
    """The images an official split list names (``paths``, under ``dataset.root``), once every
    one of them is checked to exist.

    Raises:
        IncompleteDatasetError: A listed image is missing.
    """
    paths = list(paths)
    require_listed_files(dataset_name, paths, listing)
    return dataset.select_ids(path.relative_to(dataset.root).as_posix() for path in paths)
