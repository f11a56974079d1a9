"""SeededShuffleSampler and ResumableDataLoader: order from (seed, epoch), skipping on resume."""

import pytest
import torch

from ldifs_lightning.data.sampling import (
    ResumableDataLoader,
    SeededShuffleSampler,
    TransformedDataset,
)


def _data(n: int = 10) -> TransformedDataset:
    """Items (image, label) with image = its index, as the train loader's dataset."""
    return TransformedDataset([(torch.tensor(i), i) for i in range(n)], lambda image: image)


def test_order_depends_only_on_seed_and_epoch():
    a, b = SeededShuffleSampler(_data(), seed=3), SeededShuffleSampler(_data(), seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert [i for i, _ in a] != [i for i, _ in b] and sorted(i for i, _ in a) == list(range(10))


def test_resume_skips_the_samples_of_its_epoch_once():
    sampler = SeededShuffleSampler(_data(), seed=0)
    full = list(sampler)
    sampler.resume_at(0, 4)
    assert list(sampler) == full[4:]  # same indices and per-sample seeds, minus the first 4
    assert list(sampler) == full  # once only
    sampler.resume_at(0, 4)  # an end-of-epoch checkpoint: the run goes on with the next epoch
    sampler.set_epoch(1)
    assert len(list(sampler)) == 10


def test_loader_state_is_the_batches_trained_and_loading_it_skips_them():
    trained = [0]
    sampler = SeededShuffleSampler(_data(), seed=0)
    loader = ResumableDataLoader(
        _data(), batch_size=3, sampler=sampler, batches_done=lambda: trained[0]
    )
    full = [batch[1].tolist() for batch in loader]
    trained[0] = 2
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches": 2}
    fresh = ResumableDataLoader(_data(), batch_size=3, sampler=SeededShuffleSampler(_data()))
    fresh.load_state_dict(state)
    assert [batch[1].tolist() for batch in fresh] == full[2:]


def test_a_loader_without_the_seeded_sampler_is_refused():
    with pytest.raises(ValueError, match="needs a SeededShuffleSampler"):
        ResumableDataLoader(_data(), batch_size=2)
