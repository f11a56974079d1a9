import pytest
import torch

from ldifs_lightning.data import FineTuneDataModule, list_datasets


def test_shapes_is_registered():
    assert "shapes" in list_datasets()


def test_unknown_dataset_lists_registered_and_close_matches():
    with pytest.raises(
        ValueError, match=r"unknown dataset 'shape' \(did you mean \['shapes'\]\?\)"
    ):
        FineTuneDataModule("shape")


def test_splits_sizes_and_batches():
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16)
    data.setup("fit")
    data.setup("test")
    assert len(data.train_set) == 2160 and len(data.val_set) == 240 and len(data.test_set) == 800
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64


def test_shuffle_and_augmentation_depend_only_on_seed_and_epoch():
    def first_batch(epoch: int) -> torch.Tensor:
        data = FineTuneDataModule("shapes", image_size=32, batch_size=8, max_train_samples=64)
        data.setup("fit")
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        torch.manual_seed(epoch + 100)  # the global RNG must not matter
        return next(iter(loader))[0]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_bad_caps_are_rejected():
    with pytest.raises(ValueError, match="max_train_samples=0 must be a positive number"):
        FineTuneDataModule("shapes", max_train_samples=0)
