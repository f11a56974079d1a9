"""Resumable, DDP-aware shuffling with reproducible per-sample augmentation.

The shuffle order and every random augmentation depend only on ``(seed, epoch, index)``, not on the
global RNG, so a run resumed from an end-of-epoch checkpoint sees exactly the batches an
uninterrupted run sees, with any number of data-loading workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from ldifs_lightning.data.sized import dataset_length


class SeededShuffleSampler(DistributedSampler):
    """Shuffles with ``seed + epoch`` (sharded under DDP) and yields ``(index, sample_seed)``.

    It is a ``DistributedSampler``, so Lightning keeps it under DDP instead of replacing it, and
    calls its ``set_epoch`` every epoch.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=True,
            seed=seed,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in super().__iter__():
            sample_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_033 + index) % (2**63)
            yield index, sample_seed


class TransformedDataset(Dataset):
    """Applies ``transform`` to the images of a ``(image, label)`` dataset.

    Keys may be plain indices or ``(index, sample_seed)`` pairs from :class:`SeededShuffleSampler`;
    with a seed the transform runs under a forked RNG seeded with it.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return dataset_length(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            index, sample_seed = key
            image, label = self.dataset[index]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed)
                return self.transform(image), label
        image, label = self.dataset[key]
        return self.transform(image), label
