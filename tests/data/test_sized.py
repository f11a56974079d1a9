"""dataset_length: the checked length of a map-style dataset; loaders need setup first."""

import pytest
import torch
from torch.utils.data import IterableDataset, TensorDataset

from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.data.sized import dataset_length


class _Stream(IterableDataset):
    def __iter__(self):
        yield from range(3)


def test_length_of_a_map_style_dataset():
    assert dataset_length(TensorDataset(torch.zeros(7, 2))) == 7


def test_a_dataset_without_len_fails_with_one_line():
    with pytest.raises(TypeError, match=r"^_Stream has no __len__: give a map-style dataset"):
        dataset_length(_Stream())


@pytest.mark.parametrize(("split", "stage"), [("train", "fit"), ("val", "fit"), ("test", "test")])
def test_a_loader_before_setup_names_the_setup_call(split, stage):
    data = FineTuneDataModule("shapes", image_size=32)
    loader = getattr(data, f"{split}_dataloader")
    with pytest.raises(
        RuntimeError, match=rf"the {split} set is not built yet: call setup\('{stage}'\)"
    ):
        loader()
