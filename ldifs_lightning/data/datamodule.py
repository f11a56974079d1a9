"""The fine-tuning DataModule: one dataset, its splits, transforms and loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Subset

from ldifs_lightning.data.errors import CorruptImageError
from ldifs_lightning.data.imagecheck import find_unreadable_images
from ldifs_lightning.data.labels import check_labels
from ldifs_lightning.data.layout import preview
from ldifs_lightning.data.registry import DatasetInfo, Split, get_dataset_info
from ldifs_lightning.data.sampling import (
    ResumableDataLoader,
    SeededShuffleSampler,
    TransformedDataset,
)
from ldifs_lightning.data.sized import dataset_length
from ldifs_lightning.data.splits import split_train_val
from ldifs_lightning.data.transforms import eval_transform, train_transform
from ldifs_lightning.models import check_templates


def _check_cap(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name}={value} must be a positive number of samples or null (no cap)")


def _first(indices: list[int], cap: int | None) -> list[int]:
    return indices if cap is None else indices[:cap]


class FineTuneDataModule(LightningDataModule):
    """Train/val/test loaders over a registered dataset or a user's own datasets.

    Val is a seeded split of the official train split (derived from sample ids, capped at
    ``max_val_samples``); test is the official test split, or the dataset's documented seeded
    split where it has none. ``classnames`` and ``templates`` are available right after
    construction, so LightningCLI links them into the model. Before any image is decoded for
    training, the dataset's layout is validated and (by default) every image file's header is
    checked, so a bad copy fails at ``setup`` with a one-line error naming what is wrong.

    Args:
        dataset: Registry name (see ``ldifs_lightning.data.list_datasets()``), or
            ``folder:PATH`` for your own images in ``PATH/train/<class>/`` (see README).
        root: Folder holding the datasets; each lives in its own subfolder (``ROOT/eurosat``, ...).
        batch_size: Samples per batch, per device.
        num_workers: DataLoader worker processes.
        download: Let the loader download missing files where it can (on rank 0, in
            ``prepare_data``).
        image_size: Side of the model's square input (224 for ViT-B/32, 32 for the tiny models).
        val_fraction: Fraction of the official train split held out for validation.
        max_val_samples: Cap on the validation split's size.
        split_seed: Seed of the train/val split.
        shuffle_seed: Seed of the shuffle order and augmentations (with the epoch number).
        max_train_samples: Use only the first N train samples (by index), or null for all.
        max_test_samples: Use only the first N test samples, or null for all.
        custom_templates: Prompt templates replacing the dataset's CLIP set (the ``templates``
            property), or null to keep it.
        verify_checksums: Compare CIFAR, SVHN and STL-10 files with the official md5 sums; set
            false to use a copy you made or modified (the files' format is still checked).
        image_check: Before training, open every image file and check its ``"header"`` (fast),
            decode it ``"full"`` (also finds truncated files), or check ``"none"``.
        skip_corrupt: Leave unreadable image files out (with a warning) instead of failing.

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
        # Not "templates": Lightning refuses a key that the model's hparams hold with another value.
        custom_templates: list[str] | None = None,
        verify_checksums: bool = True,
        image_check: Literal["header", "full", "none"] = "header",
        skip_corrupt: bool = False,
        *,
        _info: DatasetInfo | None = None,
    ) -> None:
        super().__init__()
        # ``_info`` is from_datasets' entry, used instead of a registry lookup. LightningCLI
        # leaves out optional arguments whose name starts with "_", so the CLI never offers it.
        self.info = get_dataset_info(dataset) if _info is None else _info
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
        if image_check not in ("header", "full", "none"):
            raise ValueError(f"image_check={image_check!r} must be 'header', 'full' or 'none'")
        if custom_templates is not None:
            check_templates(custom_templates)
        self.save_hyperparameters(ignore="_info")
        self.root = Path(root)
        self.train_set: Dataset | None = None
        # (epoch, batches trained) from a checkpoint: the train loader skips them (mid-epoch resume)
        self._resume: tuple[int, int] | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @classmethod
    def from_datasets(  # type: ignore[override]  # our own constructor, not Lightning's loaders
        cls,
        train_dataset: Dataset,
        classnames: Sequence[str],
        test_dataset: Dataset | None = None,
        templates: Sequence[str] = ("a photo of a {}.",),
        name: str = "custom",
        **kwargs: Any,
    ) -> FineTuneDataModule:
        """A DataModule over your own datasets of ``(PIL image, int label)``.

        Labels must lie in ``0 .. len(classnames) - 1``; this is checked at ``setup`` (from a
        ``targets`` or ``labels`` attribute when the dataset has one, else as samples are read).
        A ``sample_ids`` attribute (one stable string per sample) makes the train/val split
        independent of sample order; without it the split follows the sample index.

        Args:
            train_dataset: The training data; val is split off it as for registry datasets.
            classnames: One human-readable name per label, in label order.
            test_dataset: The test data, or None (then ``trainer.test`` fails with a clear error).
            templates: Prompt templates with one ``{}`` each, for the zero-shot head.
            name: Name used in messages and saved hyper-parameters.
            **kwargs: Any other ``FineTuneDataModule`` argument except ``dataset`` and
                ``custom_templates``.

        Example:
            >>> from torchvision.datasets import FakeData
            >>> data = FineTuneDataModule.from_datasets(
            ...     FakeData(size=20, num_classes=2), ["cat", "dog"], image_size=32
            ... )
            >>> data.classnames
            ('cat', 'dog')
        """
        if not classnames:
            raise ValueError("classnames is empty: give one name per label of your dataset")
        check_templates(templates)
        datasets: dict[str, Dataset | None] = {"train": train_dataset, "test": test_dataset}

        def load(root: Path, split: Split, download: bool = False) -> Dataset:
            dataset = datasets[split]
            if dataset is None:
                raise ValueError(f"{name}: no test dataset; pass test_dataset= to from_datasets")
            return dataset

        info = DatasetInfo(
            name=name,
            classnames=tuple(classnames),
            templates=tuple(templates),
            load=load,
            description="user-provided datasets",
        )
        return cls(dataset=name, **kwargs, _info=info)

    @property
    def classnames(self) -> tuple[str, ...]:
        return self.info.classnames

    @property
    def templates(self) -> tuple[str, ...]:
        custom = self.hparams["custom_templates"]
        return self.info.templates if custom is None else tuple(custom)

    @property
    def num_classes(self) -> int:
        return len(self.info.classnames)

    def _load(self, split: Split, download: bool) -> Dataset:
        options = {}
        if "verify_checksums" in self.info.load_options:
            options["verify_checksums"] = self.hparams["verify_checksums"]
        return self.info.load(self.root, split, download, **options)

    def prepare_data(self) -> None:
        """Download missing files (Lightning runs this on one process per node)."""
        if self.hparams["download"]:
            for split in ("train", "test"):
                self._load(split, download=True)

    def _readable_indices(self, dataset: Dataset, split: Split) -> list[int]:
        """Indices of the samples to use: all, or all but unreadable image files."""
        everything = list(range(dataset_length(dataset)))
        paths = getattr(dataset, "paths", None)
        if paths is None:
            return everything
        bad = find_unreadable_images(paths, self.hparams["image_check"])
        if not bad:
            return everything
        where = f"{self.info.name} {split}"
        if not self.hparams["skip_corrupt"]:
            path, reason = bad[0]
            raise CorruptImageError(
                f"{where}: {len(bad)} unreadable image file(s), first {path} ({reason}); replace "
                f"or delete them, or set skip_corrupt: true to leave them out"
            )
        rank_zero_warn(
            f"{where}: leaving out {len(bad)} unreadable image file(s): "
            f"{preview([str(path) for path, _ in bad], limit=3)}"
        )
        bad_paths = {path for path, _ in bad}
        return [
            index for index, path in zip(everything, paths, strict=True) if path not in bad_paths
        ]

    def _official(self, split: Split) -> tuple[Dataset, list[int]]:
        dataset = self._load(split, self.hparams["download"])
        dataset = check_labels(dataset, self.num_classes, f"{self.info.name} {split}")
        return dataset, self._readable_indices(dataset, split)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage in ("fit", "validate") and self.train_set is None:
            official, usable = self._official("train")
            all_ids = getattr(official, "sample_ids", None) or [
                str(index) for index in range(dataset_length(official))
            ]
            ids = [all_ids[index] for index in usable]
            train, val = split_train_val(
                ids, hp["val_fraction"], hp["split_seed"], hp["max_val_samples"]
            )
            self.train_set = Subset(
                official, _first([usable[i] for i in train], hp["max_train_samples"])
            )
            self.val_set = Subset(official, [usable[i] for i in val])
        if stage in ("test", "predict") and self.test_set is None:
            official, usable = self._official("test")
            self.test_set = Subset(official, _first(usable, hp["max_test_samples"]))

    def _loader(
        self, dataset: Dataset | None, split: Literal["train", "val", "test", "fit_eval"]
    ) -> DataLoader:
        if dataset is None:
            stage = "test" if split == "test" else "fit"
            raise RuntimeError(
                f"the {split} set is not built yet: call setup({stage!r}) before "
                f"{split}_dataloader()"
            )
        train = split == "train"
        hp = self.hparams
        transform = train_transform(hp["image_size"]) if train else eval_transform(hp["image_size"])
        wrapped = TransformedDataset(dataset, transform)
        options: dict[str, Any] = dict(
            batch_size=hp["batch_size"],
            num_workers=hp["num_workers"],
            persistent_workers=hp["num_workers"] > 0,
        )
        if not train:
            return DataLoader(wrapped, **options)
        sampler = SeededShuffleSampler(wrapped, hp["shuffle_seed"])
        loader = ResumableDataLoader(
            wrapped, sampler=sampler, batches_done=self._batches_trained, **options
        )
        if self._resume is not None:
            # Lightning builds the train loader before it restores its loops' state (to estimate
            # the number of steps), so it would never hand the loader its state: the datamodule's
            # own checkpoint entry, restored earlier, carries it.
            epoch, batches = self._resume
            loader.load_state_dict({"epoch": epoch, "batches": batches})
        return loader

    def state_dict(self) -> dict[str, Any]:
        """Where the training epoch stands (saved in checkpoints): its index and the batches of it
        already trained on. Empty outside a fit."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        return {"epoch": trainer.current_epoch, "batches": self._batches_trained()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "epoch" in state_dict and "batches" in state_dict:
            self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))

    def _batches_trained(self) -> int:
        """Batches of the current epoch the Trainer has trained on (0 without a Trainer)."""
        trainer = self.trainer
        if trainer is None:
            return 0
        current = trainer.fit_loop.epoch_loop.batch_progress.current
        return int(getattr(current, "processed", current.completed))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train")

    def fit_eval_dataloader(self) -> DataLoader:
        """The fit split (train minus val) with the eval transform, in index order, unshuffled.

        What a linear probe on fixed features is fitted on (LP and LP-FT's head, as the
        reference code fits it): no augmentation, every fit image once. It is a plain loader
        (no sampler): callers that run under DDP shard it themselves
        (:func:`~ldifs_lightning.evaluation.features.extract_features` does).

        Example:
            >>> data = FineTuneDataModule("shapes", image_size=32, max_train_samples=40)
            >>> data.setup("fit")
            >>> len(data.fit_eval_dataloader().dataset)
            40
        """
        return self._loader(self.train_set, "fit_eval")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test")
