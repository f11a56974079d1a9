"""The real loaders on tiny copies in each dataset's on-disk format: counts, labels, ids, splits."""

from __future__ import annotations

import pytest

from ldifs_lightning.data import get_dataset_info
from ldifs_lightning.data.errors import ChecksumMismatchError
from tests.data.fake_datasets import (
    CHECKSUMMED,
    WRITERS,
    label_of,
    write_fake_dataset,
    write_resisc45,
    write_sun397,
)

NAMES = sorted(WRITERS)


def _load(name: str, root, split: str):
    options = {"verify_checksums": False} if name in CHECKSUMMED else {}
    return get_dataset_info(name).load(root, split, False, **options)


def test_every_paper_dataset_has_a_writer_and_is_registered():
    paper = {"cars", "cifar10", "cifar100", "dtd", "eurosat", "gtsrb", "mnist", "resisc45"}
    paper |= {"svhn", "imagenet"}
    assert paper | {"sun397", "stl10"} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_loader_reads_the_copy_with_paired_labels(name, fake_copies):
    copy = fake_copies[name]
    info = get_dataset_info(name)
    for split, expected in [("train", copy.num_train), ("test", copy.num_test)]:
        dataset = _load(name, copy.root, split)
        assert len(dataset) == expected
        assert len(dataset.sample_ids) == len(set(dataset.sample_ids)) == expected
        assert dataset.targets == [dataset[index][1] for index in range(len(dataset))]
        assert max(dataset.targets) < len(info.classnames)
        for index in range(0, len(dataset), max(1, len(dataset) // 25)):
            image, label = dataset[index]
            assert image.mode == "RGB"  # grey datasets come out with 3 channels
            assert label_of(image) == label, (split, dataset.sample_ids[index])


@pytest.mark.parametrize("name", NAMES)
def test_ids_and_split_do_not_depend_on_calls_or_listing_order(
    name, fake_copies, request: pytest.FixtureRequest
):
    root = fake_copies[name].root
    first = {split: _load(name, root, split).sample_ids for split in ("train", "test")}
    second = {split: _load(name, root, split).sample_ids for split in ("train", "test")}
    request.getfixturevalue("reversed_listing")
    reversed_order = {split: _load(name, root, split).sample_ids for split in ("train", "test")}
    assert first == second == reversed_order
    assert not set(first["train"]) & set(first["test"])


@pytest.mark.parametrize("name", CHECKSUMMED)
def test_modified_files_are_refused_unless_checksums_are_skipped(name, fake_copies):
    with pytest.raises(
        ChecksumMismatchError,
        match=r"has md5 \w+, the official file has \w+; .*"
        r"set verify_checksums: false",
    ):
        get_dataset_info(name).load(fake_copies[name].root, "train", False)


@pytest.mark.parametrize(
    ("name", "write", "keyword"),
    [("resisc45", write_resisc45, "with_lists"), ("sun397", write_sun397, "with_partitions")],
)
def test_seeded_split_without_official_lists(name, write, keyword, tmp_path, reversed_listing):
    copy = write(tmp_path, **{keyword: False})
    train, test = _load(name, tmp_path, "train"), _load(name, tmp_path, "test")
    assert (len(train), len(test)) == (copy.num_train, copy.num_test)
    assert not set(train.sample_ids) & set(test.sample_ids)
    # Stratified: every class keeps its share of the held-out images.
    assert sorted(set(test.targets)) == list(range(len(get_dataset_info(name).classnames)))


def test_official_lists_decide_membership(fake_copies):
    root = fake_copies["resisc45"].root
    test = _load("resisc45", root, "test")
    listed = (root / "resisc45" / "resisc45-test.txt").read_text().split()
    assert sorted(sample_id.split("/")[-1] for sample_id in test.sample_ids) == sorted(listed)


def test_eurosat_seeded_split_is_pinned(tmp_path):
    """The seeded-v1 test split must never change silently: pin a few of its members."""
    write_fake_dataset("eurosat", tmp_path)
    test = _load("eurosat", tmp_path, "test")
    assert test.sample_ids[:3] == [
        "2750/AnnualCrop/AnnualCrop_10.jpg",
        "2750/Forest/Forest_5.jpg",
        "2750/HerbaceousVegetation/HerbaceousVegetation_5.jpg",
    ]
