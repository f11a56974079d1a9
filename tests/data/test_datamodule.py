import inspect
import pickle
import urllib.request

import pytest
import torch
from jsonargparse import ArgumentParser
from torchvision.datasets import FakeData

from ldifs_lightning.data import FineTuneDataModule, list_datasets
from ldifs_lightning.data.errors import ChecksumMismatchError


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


def _training_order(shuffle_seed: int) -> list[int]:
    data = FineTuneDataModule(
        "shapes", image_size=32, max_train_samples=200, shuffle_seed=shuffle_seed
    )
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    sampler.set_epoch(0)
    return [index for index, _ in sampler]


def test_shuffle_seed_sets_the_training_order():
    first = _training_order(shuffle_seed=0)
    assert sorted(first) == list(range(200))  # a permutation of the train samples
    assert first != sorted(first)
    assert _training_order(shuffle_seed=0) == first
    assert _training_order(shuffle_seed=1) != first


def test_bad_caps_are_rejected():
    with pytest.raises(ValueError, match="max_train_samples=0 must be a positive number"):
        FineTuneDataModule("shapes", max_train_samples=0)


def _val_ids(data: FineTuneDataModule) -> list[str]:
    official = data.val_set.dataset
    return sorted(official.sample_ids[index] for index in data.val_set.indices)


def test_registry_dataset_splits_from_the_files(fake_copies):
    copy = fake_copies["eurosat"]
    data = FineTuneDataModule("eurosat", root=str(copy.root), image_size=32, batch_size=8)
    data.setup("fit")
    data.setup("test")
    assert len(data.val_set) == round(0.1 * copy.num_train)
    assert len(data.train_set) + len(data.val_set) == copy.num_train
    assert len(data.test_set) == copy.num_test
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and labels.dtype == torch.int64


def test_val_split_is_the_same_whatever_the_listing_order(fake_copies, request):
    root = str(fake_copies["sun397"].root)
    first = FineTuneDataModule("sun397", root=root, image_size=32)
    first.setup("fit")
    request.getfixturevalue("reversed_listing")
    second = FineTuneDataModule("sun397", root=root, image_size=32)
    second.setup("fit")
    assert _val_ids(first) == _val_ids(second) and len(_val_ids(first)) == 40


def test_grey_images_become_three_channels(fake_copies):
    data = FineTuneDataModule("mnist", root=str(fake_copies["mnist"].root), image_size=32)
    data.setup("test")
    images, _ = next(iter(data.test_dataloader()))
    assert images.shape[1:] == (3, 32, 32)


def test_verify_checksums_reaches_the_loader(fake_copies):
    root = str(fake_copies["cifar10"].root)
    with pytest.raises(ChecksumMismatchError):
        FineTuneDataModule("cifar10", root=root, image_size=32).setup("fit")
    data = FineTuneDataModule("cifar10", root=root, image_size=32, verify_checksums=False)
    data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == fake_copies["cifar10"].num_train


def test_templates_can_replace_the_dataset_set():
    assert FineTuneDataModule("imagenet").templates[0] == "a bad photo of a {}."
    data = FineTuneDataModule("imagenet", custom_templates=["itap of a {}."])
    assert data.templates == ("itap of a {}.",) and len(data.classnames) == 1000


def test_user_datasets_with_class_names():
    train = FakeData(size=40, image_size=(3, 16, 16), num_classes=3, random_offset=0)
    test = FakeData(size=12, image_size=(3, 16, 16), num_classes=3, random_offset=1000)
    data = FineTuneDataModule.from_datasets(
        train,
        ["cat", "dog", "bird"],
        test_dataset=test,
        templates=["a {}."],
        batch_size=4,
        image_size=32,
    )
    assert data.classnames == ("cat", "dog", "bird") and data.templates == ("a {}.",)
    data.setup("fit")
    data.setup("test")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (36, 4, 12)
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (4, 3, 32, 32) and int(labels.max()) < 3


def test_user_datasets_save_the_same_hyperparameters_as_a_registry_dataset():
    train = FakeData(size=20, image_size=(3, 8, 8), num_classes=2)
    data = FineTuneDataModule.from_datasets(train, ["a", "b"], name="mine", batch_size=4)
    registry = FineTuneDataModule("shapes", batch_size=4)
    assert dict(data.hparams) == {**dict(registry.hparams), "dataset": "mine"}
    assert data.info.name == "mine" and data.info.classnames == ("a", "b")
    # The registry is untouched: building one more module by name still looks the name up.
    with pytest.raises(ValueError, match="unknown dataset 'mine'"):
        FineTuneDataModule("mine")


def test_user_datasets_reject_a_dataset_argument():
    with pytest.raises(TypeError, match="multiple values for keyword argument 'dataset'"):
        FineTuneDataModule.from_datasets(FakeData(size=4), ["a"], dataset="shapes")


def test_the_cli_sees_only_the_public_constructor_arguments():
    parser = ArgumentParser()
    parser.add_class_arguments(FineTuneDataModule, "data")
    seen = {action.dest.removeprefix("data.") for action in parser._actions}
    public = [name for name in inspect.signature(FineTuneDataModule).parameters if name[0] != "_"]
    assert set(public) <= seen
    assert not {name for name in seen if name.startswith("_")} - {"__path__"}
    assert "_info" not in seen


def test_user_dataset_loaders_pickle_for_worker_processes():
    train = FakeData(size=20, image_size=(3, 8, 8), num_classes=2, random_offset=0)
    data = FineTuneDataModule.from_datasets(
        train, ["a", "b"], test_dataset=train, image_size=16, batch_size=4
    )
    data.setup("fit")
    data.setup("test")
    for loader in (data.train_dataloader(), data.test_dataloader()):
        copy = pickle.loads(pickle.dumps(loader.dataset))  # what a spawned worker receives
        key = (3, 12345)  # (index, sample seed): the augmentation is seeded, so comparable
        assert torch.equal(copy[key][0], loader.dataset[key][0])


class _NoNetwork(Exception):
    pass


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise _NoNetwork("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


DOWNLOADABLE = [
    "cifar10",
    "cifar100",
    "dtd",
    "eurosat",
    "gtsrb",
    "mnist",
    "stl10",
    "sun397",
    "svhn",
]


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_download_never_fetches_over_a_complete_copy(name, fake_copies, no_network):
    data = FineTuneDataModule(
        name, root=str(fake_copies[name].root), download=True, verify_checksums=False
    )
    data.prepare_data()


def test_download_asks_torchvision_for_missing_files(tmp_path, no_network):
    data = FineTuneDataModule("eurosat", root=str(tmp_path), download=True)
    with pytest.raises(_NoNetwork):
        data.prepare_data()
