"""The steps the image-file loaders share, from a ``(path, label)`` listing to a split."""

import hashlib
from pathlib import Path

import pytest

from ldifs_lightning.data.errors import IncompleteDatasetError
from ldifs_lightning.data.images import ImageFileDataset
from ldifs_lightning.data.listing import checked_image_files, held_out_split, listed_split


def _folder(tmp_path: Path, per_class: int = 5) -> list[tuple[Path, int]]:
    samples = []
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for index in range(per_class):
            path = tmp_path / name / f"{index}.jpg"
            path.write_bytes(b"")
            samples.append((path, label))
    return samples


def test_ids_are_relative_to_the_root_and_sorted(tmp_path):
    samples = _folder(tmp_path)
    dataset = checked_image_files("pets", tmp_path, samples[::-1], ["cat", "dog"], tmp_path)
    assert dataset.sample_ids[:2] == ["cat/0.jpg", "cat/1.jpg"]
    assert dataset.targets == [0] * 5 + [1] * 5


def test_a_missing_listed_image_is_named_before_the_labels_are_checked(tmp_path):
    samples = [*_folder(tmp_path), (tmp_path / "dog" / "gone.jpg", 7)]
    listing = tmp_path / "list.txt"
    with pytest.raises(IncompleteDatasetError, match=r"pets: 1 of 11 images listed in .*list.txt"):
        checked_image_files("pets", tmp_path, samples, ["cat", "dog"], listing, listing=listing)
    with pytest.raises(IncompleteDatasetError, match=r"has labels \[7\] outside 0\.\.1"):
        checked_image_files("pets", tmp_path, samples, ["cat", "dog"], listing)
    # Without class names (a split that may lack classes) the labels are not checked.
    assert len(checked_image_files("pets", tmp_path, samples, None, listing)) == 11


def test_a_class_without_images_is_refused(tmp_path):
    samples = [sample for sample in _folder(tmp_path) if sample[1] == 0]
    with pytest.raises(IncompleteDatasetError, match=r"1 of 2 classes have no images.*\[dog\]"):
        checked_image_files("pets", tmp_path, samples, ["cat", "dog"], tmp_path)


def test_held_out_split_takes_the_lowest_ranked_ids_of_each_class(tmp_path):
    dataset = ImageFileDataset(tmp_path, [(f"{c}/{i}.jpg", c) for c in range(2) for i in range(10)])
    test = held_out_split(dataset, "test", fraction=0.3, seed=4)
    train = held_out_split(dataset, "train", fraction=0.3, seed=4)
    expected = []
    for c in range(2):
        ids = [f"{c}/{i}.jpg" for i in range(10)]
        expected += sorted(ids, key=lambda i: hashlib.sha256(f"4:{i}".encode()).digest())[:3]
    assert sorted(test.sample_ids) == sorted(expected)
    assert sorted(train.sample_ids + test.sample_ids) == sorted(dataset.sample_ids)


def test_listed_split_selects_the_listed_images_and_names_missing_ones(tmp_path):
    dataset = checked_image_files("pets", tmp_path, _folder(tmp_path), ["cat", "dog"], tmp_path)
    listing = tmp_path / "test.txt"
    chosen = listed_split(
        "pets", dataset, [tmp_path / "dog/3.jpg", tmp_path / "cat/1.jpg"], listing
    )
    assert chosen.sample_ids == ["cat/1.jpg", "dog/3.jpg"] and chosen.targets == [0, 1]
    with pytest.raises(IncompleteDatasetError, match=r"pets: 1 of 1 images listed in .*test.txt"):
        listed_split("pets", dataset, [tmp_path / "dog/9.jpg"], listing)
