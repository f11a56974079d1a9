"""Bad dataset input fails early with one line that says what is wrong and what to do."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from ldifs_lightning.data import FineTuneDataModule, get_dataset_info
from ldifs_lightning.data.errors import (
    CorruptImageError,
    DatasetNotFoundError,
    IncompleteDatasetError,
    LabelOutOfRangeError,
)
from tests.data.fake_datasets import (
    CHECKSUMMED,
    write_cars,
    write_cifar10,
    write_dtd,
    write_eurosat,
    write_gtsrb,
    write_imagenet,
    write_resisc45,
    write_sun397,
)


def _load(name: str, root: Path, split: str = "train"):
    options = {"verify_checksums": False} if name in CHECKSUMMED else {}
    return get_dataset_info(name).load(root, split, False, **options)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


MISSING = {
    "mnist": ("MNIST/raw/train-images-idx3-ubyte", "put the four gunzipped idx files"),
    "cifar10": ("cifar-10-batches-py/data_batch_1", "cifar-10-python.tar.gz (md5 c58f30108f"),
    "cifar100": ("cifar-100-python/train", "cifar-100-python.tar.gz (md5 eb9058c3a3"),
    "svhn": ("svhn/train_32x32.mat", "train_32x32.mat (md5 e26dedcc434d2e4c54c9b2d4a06d8373)"),
    "stl10": ("stl10_binary/train_X.bin", "stl10_binary.tar.gz (md5 91f7769df0f17e558f"),
    "gtsrb": ("gtsrb/GTSRB/Training", "GTSRB-Training_fixed.zip (md5 513f3c79a4c51417"),
    "dtd": ("dtd/dtd/images", "dtd-r1.0.1.tar.gz (md5 fff73e5086ae6bdbea199a49dfb8a4c1)"),
    "eurosat": ("eurosat/2750", "EuroSAT.zip (md5 c8fa014336c82ac7804f0398fcb19387"),
    "resisc45": ("resisc45/NWPU-RESISC45", "cannot be downloaded automatically: extract NWPU-"),
    "cars": ("stanford_cars/devkit/cars_meta.mat", "its URLs are dead"),
    "imagenet": ("imagenet", "ILSVRC2012_devkit_t12.tar.gz (md5 fa75699e90414af021442c21a"),
    "sun397": ("SUN397/ClassName.txt", "SUN397.tar.gz (md5 8ca2778205c41d23104230ba66911c7a"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_files_say_what_to_place_where(name, tmp_path):
    path, how = MISSING[name]
    with pytest.raises(DatasetNotFoundError) as error:
        _load(name, tmp_path)
    message = _one_line(error)
    assert message.startswith(f"{name}: ")
    assert str(tmp_path / path) in message and how in message


def test_datamodule_reports_a_missing_root_at_setup(tmp_path):
    data = FineTuneDataModule("eurosat", root=str(tmp_path / "nowhere"), image_size=32)
    with pytest.raises(DatasetNotFoundError, match=r"eurosat: missing \[.*nowhere/eurosat/2750\]"):
        data.setup("fit")


def test_missing_class_folders_are_named_and_counted(tmp_path):
    write_eurosat(tmp_path)
    for folder in ("River", "SeaLake"):
        shutil.rmtree(tmp_path / "eurosat" / "2750" / folder)
    with pytest.raises(IncompleteDatasetError) as error:
        _load("eurosat", tmp_path)
    assert _one_line(error) == (
        f"eurosat: 8 of 10 class folders found under {tmp_path / 'eurosat' / '2750'}; "
        f"missing: [River, SeaLake]"
    )


def test_a_stray_folder_would_shift_labels_and_is_refused(tmp_path):
    write_gtsrb(tmp_path)
    (tmp_path / "gtsrb" / "GTSRB" / "Training" / "backup").mkdir()
    with pytest.raises(IncompleteDatasetError, match=r"unexpected folders under .*: \[backup\]"):
        _load("gtsrb", tmp_path)


def test_empty_class_folder(tmp_path):
    write_eurosat(tmp_path)
    for image in (tmp_path / "eurosat" / "2750" / "River").iterdir():
        image.unlink()
    with pytest.raises(
        IncompleteDatasetError, match=r"1 of 10 class folders under .* empty: \[River\]"
    ):
        _load("eurosat", tmp_path)


def test_image_listed_in_annotations_but_missing(tmp_path):
    write_dtd(tmp_path)
    (tmp_path / "dtd" / "dtd" / "images" / "banded" / "banded_0001.jpg").unlink()
    with pytest.raises(IncompleteDatasetError) as error:
        _load("dtd", tmp_path)
    assert "dtd: 1 of 94 images listed in " in _one_line(error)
    assert "labels/train1.txt are missing: [" in str(error.value)
    assert "banded/banded_0001.jpg]" in str(error.value)


def test_cars_annotation_pointing_at_a_missing_image(tmp_path):
    write_cars(tmp_path)
    (tmp_path / "stanford_cars" / "cars_test" / "00007.jpg").unlink()
    with pytest.raises(IncompleteDatasetError, match=r"cars: 1 of 196 images listed in .*"):
        _load("cars", tmp_path, "test")


def test_sun397_missing_class_folder(tmp_path):
    write_sun397(tmp_path)
    shutil.rmtree(tmp_path / "SUN397" / "a" / "abbey")
    with pytest.raises(IncompleteDatasetError, match=r"396 of 397 class folders .*\[a/abbey\]"):
        _load("sun397", tmp_path)


def test_imagenet_missing_class_folder(tmp_path):
    write_imagenet(tmp_path)
    shutil.rmtree(tmp_path / "imagenet" / "val" / "n00000003")
    with pytest.raises(IncompleteDatasetError, match=r"999 of 1000 class folders .*\[n00000003\]"):
        _load("imagenet", tmp_path, "test")


def test_only_one_official_split_list(tmp_path):
    write_resisc45(tmp_path)
    (tmp_path / "resisc45" / "resisc45-test.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"resisc45-test.txt is missing while .*"):
        _load("resisc45", tmp_path)


def test_class_list_of_another_dataset(tmp_path):
    write_cifar10(tmp_path)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(meta.read_bytes().replace(b"airplane", b"aircraft"))
    with pytest.raises(IncompleteDatasetError, match=r"cifar10: .*batches.meta lists 10 classes"):
        _load("cifar10", tmp_path)


def _eurosat_module(root: Path, **kwargs) -> FineTuneDataModule:
    return FineTuneDataModule("eurosat", root=str(root), image_size=32, batch_size=4, **kwargs)


def test_corrupt_image_is_named_before_training(tmp_path):
    write_eurosat(tmp_path)
    bad = tmp_path / "eurosat" / "2750" / "Forest" / "Forest_3.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CorruptImageError) as error:
        _eurosat_module(tmp_path).setup("fit")
    assert _one_line(error).startswith(f"eurosat train: 1 unreadable image file(s), first {bad} (")
    assert error.value.args[0].endswith("or set skip_corrupt: true to leave them out")


def test_skip_corrupt_leaves_the_file_out_with_a_warning(tmp_path):
    write_eurosat(tmp_path)
    (tmp_path / "eurosat" / "2750" / "Forest" / "Forest_3.jpg").write_bytes(b"")
    data = _eurosat_module(tmp_path, skip_corrupt=True)
    with pytest.warns(UserWarning, match=r"eurosat train: leaving out 1 unreadable image file"):
        data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == 89


def test_truncated_image_needs_the_full_check(tmp_path):
    write_eurosat(tmp_path)
    image = tmp_path / "eurosat" / "2750" / "River" / "River_2.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(image)
    image.write_bytes(image.read_bytes()[:-200])  # the pixel data ends early
    _eurosat_module(tmp_path).setup("fit")  # the header is intact
    with pytest.raises(CorruptImageError, match=r"River_2\.jpg"):
        _eurosat_module(tmp_path, image_check="full").setup("fit")


def test_unchecked_corrupt_image_still_fails_when_read(tmp_path):
    write_eurosat(tmp_path)
    bad = tmp_path / "eurosat" / "2750" / "Forest" / "Forest_3.jpg"
    bad.write_bytes(b"not an image")
    dataset = _load("eurosat", tmp_path)
    with pytest.raises(CorruptImageError, match=f"cannot read image {bad}"):
        dataset[dataset.sample_ids.index("2750/Forest/Forest_3.jpg")]


class _Listed(Dataset):
    def __init__(self, labels: list[int]) -> None:
        self.targets = labels

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return Image.new("RGB", (8, 8)), self.targets[index]


def test_user_labels_beyond_the_class_list_fail_at_setup():
    data = FineTuneDataModule.from_datasets(_Listed([0, 1, 2, 3]), ["cat", "dog", "bird"])
    with pytest.raises(LabelOutOfRangeError) as error:
        data.setup("fit")
    assert _one_line(error) == (
        "custom train: label 3 of sample 3 is outside 0..2 (3 class names); give one class name "
        "per label"
    )


def test_user_labels_without_a_label_list_fail_when_read():
    class Unlisted(Dataset):
        def __len__(self) -> int:
            return 20

        def __getitem__(self, index: int):
            return Image.new("RGB", (8, 8)), index % 4

    data = FineTuneDataModule.from_datasets(
        Unlisted(), ["a", "b", "c"], image_size=32, batch_size=20, val_fraction=0.1
    )
    data.setup("fit")
    with pytest.raises(LabelOutOfRangeError, match=r"custom train: label 3 of sample \d+"):
        next(iter(data.train_dataloader()))


def test_missing_user_test_dataset():
    data = FineTuneDataModule.from_datasets(_Listed([0, 1]), ["cat", "dog"])
    with pytest.raises(ValueError, match="custom: no test dataset; pass test_dataset="):
        data.setup("test")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"custom_templates": ["a photo"]}, "must be a string with exactly one '{}'"),
        ({"image_check": "quick"}, "image_check='quick' must be 'header', 'full' or 'none'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FineTuneDataModule("shapes", **kwargs)


def test_labels_are_ints_after_checking():
    data = FineTuneDataModule.from_datasets(
        _Listed([0, 1] * 10), ["cat", "dog"], image_size=32, batch_size=4
    )
    data.setup("fit")
    _, labels = next(iter(data.train_dataloader()))
    assert labels.dtype == torch.int64


def _rewrite_gtsrb_csv(root: Path, change) -> None:
    csv = root / "gtsrb" / "GT-final_test.csv"
    header, *rows = csv.read_text().splitlines()
    csv.write_text("\n".join([header, *change(rows)]) + "\n")


def test_class_without_test_images(tmp_path):
    write_gtsrb(tmp_path)
    _rewrite_gtsrb_csv(tmp_path, lambda rows: [row for row in rows if not row.endswith(";5")])
    with pytest.raises(IncompleteDatasetError) as error:
        _load("gtsrb", tmp_path, "test")
    assert "gtsrb: 1 of 43 classes have no images in " in _one_line(error)
    assert str(error.value).endswith("[red and white circle 80 kph speed limit]")


def test_annotation_label_beyond_the_classes(tmp_path):
    write_gtsrb(tmp_path)
    _rewrite_gtsrb_csv(tmp_path, lambda rows: [*rows[:-1], rows[-1].replace(";42", ";43")])
    with pytest.raises(IncompleteDatasetError, match=r"has labels \[43\] outside 0\.\.42"):
        _load("gtsrb", tmp_path, "test")
