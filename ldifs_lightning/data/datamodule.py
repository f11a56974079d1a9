"""The fine-tuning DataModule: one registry dataset, its splits, transforms and loaders."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

from ldifs_lightning.data.registry import get_dataset_info
from ldifs_lightning.data.sampling import SeededShuffleSampler, TransformedDataset
from ldifs_lightning.data.splits import split_train_val
from ldifs_lightning.data.transforms import eval_transform, train_transform


def _check_cap(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name}={value} must be a positive number of samples or null (no cap)")


def _first(indices: list[int], cap: int | None) -> list[int]:
    return indices if cap is None else indices[:cap]


class FineTuneDataModule(LightningDataModule):
    """Train/val/test loaders over a registered dataset.

    Val is a seeded split of the official train split (derived from sample ids, capped at
    ``max_val_samples``); test is the official test split. ``classnames`` and ``templates`` are
    available right after construction, so LightningCLI links them into the model.

    Args:
        dataset: Registry name (see ``ldifs_lightning.data.list_datasets()``).
        root: Folder holding the dataset files (unused by generated datasets).
        batch_size: Samples per batch, per device.
        num_workers: DataLoader worker processes.
        download: Let the loader download missing files where it can.
        image_size: Side of the model's square input (224 for ViT-B/32, 32 for the tiny models).
        val_fraction: Fraction of the official train split held out for validation.
        max_val_samples: Cap on the validation split's size.
        split_seed: Seed of the train/val split.
        shuffle_seed: Seed of the shuffle order and augmentations (with the epoch number).
        max_train_samples: Use only the first N train samples (by index), or null for all.
        max_test_samples: Use only the first N test samples, or null for all.

    Example:
        >>> data = FineTuneDataModule("shapes", image_size=32, batch_size=64)
        >>> data.classnames[:2]
        ('circle', 'square')
    """

    def __init__(
        self,
        dataset: str = "shapes",
        root: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        download: bool = False,
        image_size: int = 224,
        val_fraction: float = 0.1,
        max_val_samples: int = 20_000,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        max_train_samples: int | None = None,
        max_test_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.info = get_dataset_info(dataset)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
        for name, cap in [
            ("max_train_samples", max_train_samples),
            ("max_test_samples", max_test_samples),
            ("max_val_samples", max_val_samples),
        ]:
            _check_cap(name, cap)
        self.save_hyperparameters()
        self.root = Path(root)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def classnames(self) -> tuple[str, ...]:
        return self.info.classnames

    @property
    def templates(self) -> tuple[str, ...]:
        return self.info.templates

    @property
    def num_classes(self) -> int:
        return len(self.info.classnames)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage in ("fit", "validate") and self.train_set is None:
            official = self.info.load(self.root, "train", hp.download)
            ids = getattr(official, "sample_ids", None) or [str(i) for i in range(len(official))]
            train, val = split_train_val(ids, hp.val_fraction, hp.split_seed, hp.max_val_samples)
            self.train_set = Subset(official, _first(train, hp.max_train_samples))
            self.val_set = Subset(official, val)
        if stage in ("test", "predict") and self.test_set is None:
            official = self.info.load(self.root, "test", hp.download)
            self.test_set = Subset(
                official, _first(list(range(len(official))), hp.max_test_samples)
            )

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        hp = self.hparams
        transform = train_transform(hp.image_size) if train else eval_transform(hp.image_size)
        wrapped = TransformedDataset(dataset, transform)
        return DataLoader(
            wrapped,
            batch_size=hp.batch_size,
            sampler=SeededShuffleSampler(wrapped, hp.shuffle_seed) if train else None,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
