"""Labels must name a class: checked up front when a dataset lists its labels, else per sample."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from ldifs_lightning.data.errors import LabelOutOfRangeError
from ldifs_lightning.data.sized import dataset_length


def _listed_labels(dataset: Dataset) -> list[int] | None:
    for attribute in ("targets", "labels"):
        labels = getattr(dataset, attribute, None)
        if labels is not None and not isinstance(labels, str):
            try:
                return [int(label) for label in labels]
            except (TypeError, ValueError):
                return None
    return None


def _out_of_range(label: int, index: int, num_classes: int, where: str) -> LabelOutOfRangeError:
    return LabelOutOfRangeError(
        f"{where}: label {label} of sample {index} is outside 0..{num_classes - 1} "
        f"({num_classes} class names); give one class name per label"
    )


class LabelCheckedDataset(Dataset):
    """Raises ``LabelOutOfRangeError`` when a sample's label has no class name."""

    def __init__(self, dataset: Dataset, num_classes: int, where: str) -> None:
        self.dataset, self.num_classes, self.where = dataset, num_classes, where
        self.sample_ids = getattr(dataset, "sample_ids", None)

    def __len__(self) -> int:
        return dataset_length(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        if not 0 <= int(label) < self.num_classes:
            raise _out_of_range(int(label), index, self.num_classes, self.where)
        return image, int(label)


def check_labels(dataset: Dataset, num_classes: int, where: str) -> Dataset:
    """``dataset`` itself after checking its listed labels, or wrapped to check each sample.

    Args:
        dataset: Returns ``(image, label)``; a ``targets`` or ``labels`` attribute lets every
            label be checked at once, before training.
        num_classes: Number of class names.
        where: Named in the error, e.g. ``"custom train"``.
    """
    labels = _listed_labels(dataset)
    if labels is None:
        return LabelCheckedDataset(dataset, num_classes, where)
    for index, label in enumerate(labels):
        if not 0 <= label < num_classes:
            raise _out_of_range(label, index, num_classes, where)
    return dataset
