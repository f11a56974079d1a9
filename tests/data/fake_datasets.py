"""Tiny copies of the registered datasets, written in each dataset's real on-disk format.

Every writer puts its dataset under ``root`` exactly where the package's loader (and torchvision)
look for it, with the official file formats: MNIST idx files, CIFAR pickles, SVHN ``.mat``, STL-10
binaries, image folders with the official annotation files. Each image is a solid colour that
encodes its label (``label_of``), so tests can check that images and labels stay paired.

    copy = write_fake_dataset("eurosat", tmp_path)
    copy.num_train, copy.num_test  # what the loader must find
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from ldifs_lightning.data.classnames.cars import STANFORD_CARS_CLASSNAMES
from ldifs_lightning.data.classnames.cifar import CIFAR10_CLASSNAMES, CIFAR100_CLASSNAMES
from ldifs_lightning.data.classnames.dtd import DTD_CLASSNAMES
from ldifs_lightning.data.classnames.eurosat import EUROSAT_FOLDERS
from ldifs_lightning.data.classnames.gtsrb import GTSRB_FOLDERS
from ldifs_lightning.data.classnames.resisc45 import RESISC45_FOLDERS
from ldifs_lightning.data.classnames.stl10 import STL10_CLASSNAMES
from ldifs_lightning.data.classnames.sun397 import SUN397_FOLDERS


@dataclass(frozen=True)
class FakeCopy:
    """Where a fake dataset was written and what its loader must return."""

    name: str
    root: Path
    num_train: int
    num_test: int


def colour_of(label: int) -> tuple[int, int, int]:
    """The solid colour that encodes ``label`` (0..1023); survives JPEG to within +-3."""
    return (label % 32) * 8 + 4, (label // 32) * 8 + 4, 128


def label_of(image: Image.Image) -> int:
    """Decode the label from an image written by this module (RGB, or grey for labels < 32)."""
    red, green, blue = np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    if abs(blue - 128) > 8:  # grey images carry the label in their level only
        return round((red - 4) / 8)
    return round((red - 4) / 8) + 32 * round((green - 4) / 8)


def _array(labels: list[int], size: int) -> np.ndarray:
    """``uint8 [N, size, size, 3]`` images of solid label colours."""
    colours = np.array([colour_of(label) for label in labels], dtype=np.uint8)
    return np.broadcast_to(colours[:, None, None, :], (len(labels), size, size, 3)).copy()


def _save_image(path: Path, label: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour_of(label)).save(path)


def _cycle(num_classes: int, count: int) -> list[int]:
    return [index % num_classes for index in range(count)]


def write_mnist(root: Path) -> FakeCopy:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 30, "t10k": 10}
    for prefix, count in sizes.items():
        labels = _cycle(10, count)
        images = np.array([np.full((28, 28), (label % 32) * 8 + 4) for label in labels], np.uint8)
        # idx format: big-endian magic (0, 0, dtype 0x08 = uint8, ndim), then the dims.
        header = bytes([0, 0, 8, 3]) + np.array([count, 28, 28], ">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = bytes([0, 0, 8, 1]) + np.array([count], ">i4").tobytes()
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + bytes(labels))
    return FakeCopy("mnist", root, sizes["train"], sizes["t10k"])


def _write_pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(content, handle, protocol=2)


def _cifar_rows(labels: list[int]) -> np.ndarray:
    # One row per image: 1024 red, then 1024 green, then 1024 blue values (channel-major).
    return _array(labels, 32).transpose(0, 3, 1, 2).reshape(len(labels), 3072)


def write_cifar10(root: Path) -> FakeCopy:
    folder = root / "cifar-10-batches-py"
    per_batch, num_test = 4, 10
    for batch in range(1, 6):
        labels = _cycle(10, per_batch * 5)[(batch - 1) * per_batch : batch * per_batch]
        _write_pickle(
            folder / f"data_batch_{batch}",
            {"batch_label": f"batch {batch}", "labels": labels, "data": _cifar_rows(labels)},
        )
    labels = _cycle(10, num_test)
    _write_pickle(folder / "test_batch", {"labels": labels, "data": _cifar_rows(labels)})
    _write_pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSNAMES)})
    return FakeCopy("cifar10", root, per_batch * 5, num_test)


def write_cifar100(root: Path) -> FakeCopy:
    folder = root / "cifar-100-python"
    num_train, num_test = 200, 100
    for name, count in [("train", num_train), ("test", num_test)]:
        labels = _cycle(100, count)
        _write_pickle(
            folder / name,
            {"fine_labels": labels, "coarse_labels": [0] * count, "data": _cifar_rows(labels)},
        )
    fine_names = [name.replace(" ", "_") for name in CIFAR100_CLASSNAMES]
    _write_pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": []})
    return FakeCopy("cifar100", root, num_train, num_test)


def write_svhn(root: Path) -> FakeCopy:
    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 30, "test": 10}
    for split, count in sizes.items():
        labels = _cycle(10, count)
        images = _array(labels, 32).transpose(1, 2, 3, 0)  # the .mat stores X as [H, W, C, N]
        digits = np.array([[10 if label == 0 else label] for label in labels], np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images, "y": digits})
    return FakeCopy("svhn", root, sizes["train"], sizes["test"])


def write_stl10(root: Path) -> FakeCopy:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 20, "test": 10}
    for split, count in sizes.items():
        labels = _cycle(10, count)
        # Column-major images: [N, C, W, H] in the file.
        images = _array(labels, 96).transpose(0, 3, 2, 1)
        (folder / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images).tobytes())
        (folder / f"{split}_y.bin").write_bytes(bytes(label + 1 for label in labels))
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSNAMES) + "\n")
    return FakeCopy("stl10", root, sizes["train"], sizes["test"])


def write_gtsrb(root: Path) -> FakeCopy:
    base = root / "gtsrb"
    per_class = 2
    for class_id, folder in enumerate(GTSRB_FOLDERS):
        for index in range(per_class):
            _save_image(base / "GTSRB" / "Training" / folder / f"00000_{index:05d}.ppm", class_id)
        (base / "GTSRB" / "Training" / folder / f"GT-{folder}.csv").write_text("Filename\n")
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for class_id in range(len(GTSRB_FOLDERS)):
        name = f"{class_id:05d}.ppm"
        _save_image(base / "GTSRB" / "Final_Test" / "Images" / name, class_id)
        rows.append(f"{name};8;8;0;0;7;7;{class_id}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return FakeCopy("gtsrb", root, per_class * len(GTSRB_FOLDERS), len(GTSRB_FOLDERS))


def write_dtd(root: Path) -> FakeCopy:
    data = root / "dtd" / "dtd"
    lines: dict[str, list[str]] = {"train1": [], "val1": [], "test1": []}
    for label, name in enumerate(DTD_CLASSNAMES):
        for index, listing in enumerate(["train1", "train1", "val1", "test1"]):
            relative = f"{name}/{name}_{index:04d}.jpg"
            _save_image(data / "images" / relative, label)
            lines[listing].append(relative)
    (data / "labels").mkdir(parents=True, exist_ok=True)
    for listing, entries in lines.items():
        (data / "labels" / f"{listing}.txt").write_text("\n".join(entries) + "\n")
    return FakeCopy("dtd", root, len(lines["train1"]), len(lines["test1"]))


def write_eurosat(root: Path, per_class: int = 10) -> FakeCopy:
    data = root / "eurosat" / "2750"
    for label, folder in enumerate(EUROSAT_FOLDERS):
        for index in range(1, per_class + 1):
            _save_image(data / folder / f"{folder}_{index}.jpg", label)
    held_out = round(0.1 * per_class) * len(EUROSAT_FOLDERS)
    return FakeCopy("eurosat", root, per_class * len(EUROSAT_FOLDERS) - held_out, held_out)


def write_resisc45(root: Path, with_lists: bool = True) -> FakeCopy:
    base = root / "resisc45"
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    per_class = ["train", "train", "train", "val", "test"]
    for label, folder in enumerate(RESISC45_FOLDERS):
        for index, listing in enumerate(per_class, start=1):
            name = f"{folder}_{index:03d}.jpg"
            _save_image(base / "NWPU-RESISC45" / folder / name, label)
            lists[listing].append(name)
    if with_lists:
        for listing, names in lists.items():
            (base / f"resisc45-{listing}.txt").write_text("\n".join(names) + "\n")
        return FakeCopy("resisc45", root, len(lists["train"]), len(lists["test"]))
    held_out = round(0.2 * len(per_class)) * len(RESISC45_FOLDERS)
    return FakeCopy("resisc45", root, len(per_class) * len(RESISC45_FOLDERS) - held_out, held_out)


def _cars_annotations(labels: list[int], names: list[str]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    records = np.zeros((1, len(labels)), dtype=[(field, "O") for field in fields])
    for index, (label, name) in enumerate(zip(labels, names, strict=True)):
        records[0, index] = (0, 0, 7, 7, label + 1, name)  # classes are 1-based in the files
    return records


def write_cars(root: Path) -> FakeCopy:
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    class_names = np.empty((1, len(STANFORD_CARS_CLASSNAMES)), dtype=object)
    class_names[0, :] = list(STANFORD_CARS_CLASSNAMES)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": class_names})
    labels = list(range(len(STANFORD_CARS_CLASSNAMES)))
    for split, mat in [
        ("train", base / "devkit" / "cars_train_annos.mat"),
        ("test", base / "cars_test_annos_withlabels.mat"),
    ]:
        names = [f"{index + 1:05d}.jpg" for index in labels]
        for label, name in zip(labels, names, strict=True):
            _save_image(base / f"cars_{split}" / name, label)
        scipy.io.savemat(mat, {"annotations": _cars_annotations(labels, names)})
    return FakeCopy("cars", root, len(labels), len(labels))


def imagenet_wnids() -> list[str]:
    """1000 made-up WordNet-style ids, in sorted (label) order."""
    return [f"n{index:08d}" for index in range(1000)]


def write_imagenet(root: Path) -> FakeCopy:
    base = root / "imagenet"
    wnids = imagenet_wnids()
    for label, wnid in enumerate(wnids):
        _save_image(base / "train" / wnid / f"{wnid}_1.JPEG", label)
        _save_image(base / "val" / wnid / f"ILSVRC2012_val_{label + 1:08d}.JPEG", label)
    wnid_to_classes = {wnid: (f"class {label}",) for label, wnid in enumerate(wnids)}
    torch.save((wnid_to_classes, wnids), base / "meta.bin")
    return FakeCopy("imagenet", root, len(wnids), len(wnids))


def write_sun397(root: Path, with_partitions: bool = True) -> FakeCopy:
    data = root / "SUN397"
    data.mkdir(parents=True, exist_ok=True)
    (data / "ClassName.txt").write_text("".join(f"/{folder}\n" for folder in SUN397_FOLDERS))
    listed: dict[str, list[str]] = {"train": [], "test": []}
    for label, folder in enumerate(SUN397_FOLDERS):
        for index, listing in enumerate(["train", "test", None]):
            relative = f"{folder}/sun_{label:03d}{'abc'[index]}.jpg"
            _save_image(data / relative, label)
            if listing is not None:
                listed[listing].append(f"/{relative}")
    if with_partitions:
        (data / "Partitions").mkdir()
        (data / "Partitions" / "Training_01.txt").write_text("\n".join(listed["train"]) + "\n")
        (data / "Partitions" / "Testing_01.txt").write_text("\n".join(listed["test"]) + "\n")
        return FakeCopy("sun397", root, len(listed["train"]), len(listed["test"]))
    held_out = round(0.2 * 3) * len(SUN397_FOLDERS)
    return FakeCopy("sun397", root, 3 * len(SUN397_FOLDERS) - held_out, held_out)


WRITERS: dict[str, Callable[[Path], FakeCopy]] = {
    "cars": write_cars,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "dtd": write_dtd,
    "eurosat": write_eurosat,
    "gtsrb": write_gtsrb,
    "imagenet": write_imagenet,
    "mnist": write_mnist,
    "resisc45": write_resisc45,
    "stl10": write_stl10,
    "sun397": write_sun397,
    "svhn": write_svhn,
}

# Datasets whose copies need verify_checksums: false (their loaders compare official md5 sums).
CHECKSUMMED = ("cifar10", "cifar100", "stl10", "svhn")


def write_fake_dataset(name: str, root: Path) -> FakeCopy:
    """Write the tiny copy of registry dataset ``name`` under ``root``."""
    return WRITERS[name](root)
