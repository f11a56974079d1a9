"""Foreign datasets on which forgetting is measured: class names, templates, capped splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from ldifs_lightning.data import get_dataset_info
from ldifs_lightning.data.sampling import TransformedDataset
from ldifs_lightning.data.sized import dataset_length
from ldifs_lightning.data.transforms import eval_transform


@dataclass
class ForeignDataset:
    """One dataset of a forgetting suite.

    Attributes:
        name: Name used in metric keys (``forgetting/<name>/lp_acc``).
        train: ``(image tensor, label)`` samples the linear probe is fitted on.
        test: ``(image tensor, label)`` samples accuracies are measured on.
        classnames: Class names in label order (needed for zero-shot).
        templates: Prompt templates with one ``{}`` (needed for zero-shot).
        identity: Per split, what identifies the samples for the feature cache (dataset name,
            resolved root, sample-id hash, transform, indices). Empty (the default) disables
            caching for this dataset.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(8, 3, 32, 32), torch.arange(8) % 2)
        >>> ForeignDataset("toy", train=data, test=data, classnames=["a", "b"])  # doctest: +SKIP
    """

    name: str
    train: Dataset
    test: Dataset
    classnames: Sequence[str] = ()
    templates: Sequence[str] = ("a photo of a {}.",)
    identity: dict[str, dict[str, object]] = field(default_factory=dict)


def check_sample_caps(max_train_samples: int | None, max_test_samples: int | None) -> None:
    """One-line error unless each cap is a positive number of samples or None (whole split).

    Example:
        >>> check_sample_caps(2000, None)
    """
    for name, cap in [
        ("max_train_samples", max_train_samples),
        ("max_test_samples", max_test_samples),
    ]:
        if cap is not None and cap < 1:
            raise ValueError(f"{name}={cap} must be a positive number of samples or null")


def capped_indices(size: int, cap: int | None, seed: int) -> list[int]:
    """All indices, or a seeded random subset of ``cap`` of them (sorted), so that a cap does not
    keep only the first classes of a class-sorted dataset."""
    if cap is None or cap >= size:
        return list(range(size))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=generator)[:cap].tolist())


def _ids_digest(dataset: Dataset) -> str:
    ids = getattr(dataset, "sample_ids", None) or [str(i) for i in range(dataset_length(dataset))]
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def registry_suite(
    names: Sequence[str],
    root: str | Path,
    image_size: int,
    max_train_samples: int | None = 2000,
    max_test_samples: int | None = 1000,
    seed: int = 0,
    download: bool = False,
    verify_checksums: bool = True,
) -> list[ForeignDataset]:
    """Build suite members from registry names (or ``folder:PATH``), with the eval transform for
    ``image_size``.

    The train split is the official train split (no val hold-out: the probe holds out its own
    part), both splits capped by seeded random subsets. ``verify_checksums=False`` accepts
    CIFAR/SVHN/STL-10 copies that are not the official files (see docs/datasets.md).
    """
    if not names:
        raise ValueError("the forgetting suite is empty: name at least one dataset")
    for label, cap in [
        ("max_train_samples", max_train_samples),
        ("max_test_samples", max_test_samples),
    ]:
        if cap is not None and cap < 1:
            raise ValueError(f"{label}={cap} must be a positive number of samples or null")
    infos = [get_dataset_info(name) for name in names]  # fails on unknown names first
    transform = eval_transform(image_size)
    suite = []
    # A member keeps the name it was asked by (the callback looks members up by it); the cache
    # identity uses the entry's name, which for folder:PATH holds the resolved path.
    for name, info in zip(names, infos, strict=True):
        members: dict[str, Dataset] = {}
        identity: dict[str, dict[str, object]] = {}
        for split, cap in [("train", max_train_samples), ("test", max_test_samples)]:
            options = {}
            if "verify_checksums" in info.load_options:
                options["verify_checksums"] = verify_checksums
            official = info.load(Path(root), split, download, **options)
            indices = capped_indices(dataset_length(official), cap, seed)
            members[split] = TransformedDataset(Subset(official, indices), transform)
            identity[split] = {
                "dataset": info.name,
                "root": str(Path(root).resolve()),
                "split": split,
                "samples": _ids_digest(official),
                "transform": repr(transform),
                "indices": indices,
            }
        suite.append(
            ForeignDataset(
                name,
                members["train"],
                members["test"],
                info.classnames,
                info.templates,
                identity,
            )
        )
    return suite
