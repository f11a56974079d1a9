"""Resumable, DDP-aware shuffling with reproducible per-sample augmentation.

The shuffle order and every random augmentation depend only on ``(seed, epoch, index)``, not on the
global RNG, so a run resumed from a checkpoint sees exactly the batches an uninterrupted run sees,
with any number of data-loading workers: from an end-of-epoch checkpoint by construction, and from
a mid-epoch one because :class:`ResumableDataLoader` records how many batches of the epoch were
trained on and its sampler skips them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

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

    _resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples: int) -> None:
        """Skip this rank's first ``samples`` samples the next time epoch ``epoch`` is iterated
        (once; a checkpoint taken at an epoch's end resumes with the next epoch: nothing skipped).
        """
        self._resume = (epoch, samples)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip = 0
        if self._resume is not None:
            epoch, samples = self._resume
            self._resume = None
            skip = samples if epoch == self.epoch else 0
        for position, index in enumerate(super().__iter__()):
            if position < skip:
                continue
            sample_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_033 + index) % (2**63)
            yield index, sample_seed


class ResumableDataLoader(DataLoader):
    """A training DataLoader that Lightning can resume mid-epoch (it is ``_Stateful``).

    Its state is the epoch and the number of its batches already trained on, which
    ``batches_done`` reports (the Trainer's count, not the batches handed out: Lightning fetches
    one ahead); loading it makes the :class:`SeededShuffleSampler` skip those samples once.

    Example:
        >>> data = TransformedDataset([(torch.zeros(3), 0)] * 8, lambda image: image)
        >>> loader = ResumableDataLoader(data, batch_size=2, sampler=SeededShuffleSampler(data))
        >>> loader.load_state_dict({"epoch": 0, "batches": 3})
        >>> len([batch for batch in loader])
        1
    """

    def __init__(
        self, *args: Any, batches_done: Callable[[], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, SeededShuffleSampler):
            raise ValueError("ResumableDataLoader needs a SeededShuffleSampler")
        self.batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        sampler = cast(SeededShuffleSampler, self.sampler)
        done = self.batches_done() if self.batches_done is not None else 0
        return {"epoch": sampler.epoch, "batches": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        sampler = cast(SeededShuffleSampler, self.sampler)
        batch_size = self.batch_size or 1
        sampler.resume_at(int(state_dict["epoch"]), int(state_dict["batches"]) * batch_size)


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
