"""Datasets, splits, transforms and the fine-tuning DataModule."""

from ldifs_lightning.data import domains as _domains  # noqa: F401  (registers the demo's domains)
from ldifs_lightning.data import sources as _sources  # noqa: F401  (registers the real datasets)
from ldifs_lightning.data.datamodule import FineTuneDataModule
from ldifs_lightning.data.registry import (
    DatasetInfo,
    get_dataset_info,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DatasetInfo",
    "FineTuneDataModule",
    "get_dataset_info",
    "list_datasets",
    "register_dataset",
]
