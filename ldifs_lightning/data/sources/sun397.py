"""SUN397: torchvision's loader, with the official partition 1 or the package's seeded split.

Layout, as the official archive extracts (torchvision downloads it, 37 GB)::

    ROOT/SUN397/ClassName.txt                  the 397 class folders, one a line
    ROOT/SUN397/<letter>/<class>/sun_*.jpg     108,754 images
    ROOT/SUN397/Partitions/Training_01.txt     optional: the official partition 1 (from
    ROOT/SUN397/Partitions/Testing_01.txt      Partitions.zip), 50 images per class each

With the partition files, train is ``Training_01.txt`` and test ``Testing_01.txt`` (19,850 images
each), as in the LDIFS and task-vectors reference code. Without them the package uses split
``seeded-v1``: 20% of each class as test, ranked by ``sha256("0:<relative path>")``.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import SUN397

from ldifs_lightning.data.classnames.sun397 import SUN397_CLASSNAMES, SUN397_FOLDERS
from ldifs_lightning.data.errors import DatasetNotFoundError, IncompleteDatasetError
from ldifs_lightning.data.layout import preview, require_files
from ldifs_lightning.data.listing import checked_image_files, held_out_split, listed_split
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import SUN397_TEMPLATES

# Split "seeded-v1" (used only without the partition files). Changing a value changes the test set.
TEST_FRACTION = 0.2
TEST_SEED = 0
PARTITION_FILES = {"train": "Training_01.txt", "test": "Testing_01.txt"}
PARTITIONS_URL = "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"


def _check_class_list(data_folder: Path) -> None:
    listed = [
        line.strip().lstrip("/")
        for line in (data_folder / "ClassName.txt").read_text().splitlines()
        if line.strip()
    ]
    if listed != list(SUN397_FOLDERS):
        unknown = sorted(set(listed) - set(SUN397_FOLDERS))
        absent = sorted(set(SUN397_FOLDERS) - set(listed))
        raise IncompleteDatasetError(
            f"sun397: {data_folder / 'ClassName.txt'} is not SUN397's list of 397 classes in order "
            f"({len(listed)} lines; unknown: {preview(unknown)}; absent: {preview(absent)})"
        )
    missing = [folder for folder in SUN397_FOLDERS if not (data_folder / folder).is_dir()]
    if missing:
        raise IncompleteDatasetError(
            f"sun397: {len(SUN397_FOLDERS) - len(missing)} of {len(SUN397_FOLDERS)} class "
            f"folders found under {data_folder}; missing: {preview(missing)}"
        )


def load_sun397(root: Path, split: Split, download: bool = False) -> Dataset:
    """SUN397's partition-1 train/test lists when present, else the seeded-v1 split."""
    data_folder = Path(root) / "SUN397"
    if download and not data_folder.is_dir():
        SUN397(str(root), download=True)
    require_files(
        "sun397",
        [data_folder / "ClassName.txt"],
        f"set download: true, or extract SUN397.tar.gz (md5 {SUN397._DATASET_MD5}, "
        f"{SUN397._DATASET_URL}) into {root}; for the official partition 1 also extract "
        f"{PARTITIONS_URL} into {data_folder / 'Partitions'}",
    )
    _check_class_list(data_folder)
    base = SUN397(str(root))
    samples = list(zip(base._image_files, base._labels, strict=True))  # torchvision's list
    dataset = checked_image_files("sun397", data_folder, samples, SUN397_CLASSNAMES, data_folder)
    partitions = {name: data_folder / "Partitions" / file for name, file in PARTITION_FILES.items()}
    present = [name for name, path in partitions.items() if path.is_file()]
    if len(present) == 1:
        missing = next(path for path in partitions.values() if not path.is_file())
        raise DatasetNotFoundError(
            f"sun397: {missing} is missing while {partitions[present[0]]} exists; extract "
            f"{PARTITIONS_URL} there, or remove both to use the seeded-v1 split"
        )
    if present:
        listing = partitions[split]
        wanted = [
            line.strip().lstrip("/") for line in listing.read_text().splitlines() if line.strip()
        ]
        return listed_split("sun397", dataset, [data_folder / name for name in wanted], listing)
    return held_out_split(dataset, split, TEST_FRACTION, TEST_SEED)


register_dataset(
    DatasetInfo(
        name="sun397",
        classnames=SUN397_CLASSNAMES,
        templates=SUN397_TEMPLATES,
        load=load_sun397,
        description="SUN397: 108,754 scene photos of 397 categories (torchvision downloads it)",
        split_source="official partition 1 Training_01.txt 19,850 / Testing_01.txt 19,850 when "
        "present; else seeded-v1: 20% of each class as test (87,002 / 21,752)",
    )
)
