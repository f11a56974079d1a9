"""Stanford Cars: torchvision's loader (needs scipy); the files must be provided by hand.

The original download URLs are dead, so ``download: true`` cannot fetch them. Layout, as
torchvision reads it::

    ROOT/stanford_cars/devkit/cars_meta.mat             196 class names
    ROOT/stanford_cars/devkit/cars_train_annos.mat      train annotations
    ROOT/stanford_cars/cars_train/*.jpg                 8,144 images
    ROOT/stanford_cars/cars_test_annos_withlabels.mat   test annotations (not in devkit/)
    ROOT/stanford_cars/cars_test/*.jpg                  8,041 images
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import StanfordCars

from ldifs_lightning.data.classnames.cars import STANFORD_CARS_CLASSNAMES
from ldifs_lightning.data.errors import IncompleteDatasetError
from ldifs_lightning.data.layout import require_files
from ldifs_lightning.data.listing import checked_image_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import STANFORD_CARS_TEMPLATES

# md5 of the original archives, for checking a copy from a mirror.
_ORIGINAL_FILES = (
    "car_devkit.tgz (md5 c3b158d763b6e2245038c8ad08e45376), cars_train.tgz (md5 "
    "065e5b463ae28d29e77c1b4b166cfe61), cars_test.tgz (md5 4ce7ebf6a94d07f1952d94dd34c4d501) and "
    "cars_test_annos_withlabels.mat (md5 b0a2b23655a3edd16d84508592a98d10)"
)


def _needed(base_folder: Path, split: Split) -> tuple[Path, Path]:
    if split == "train":
        return base_folder / "devkit" / "cars_train_annos.mat", base_folder / "cars_train"
    return base_folder / "cars_test_annos_withlabels.mat", base_folder / "cars_test"


def load_stanford_cars(root: Path, split: Split, download: bool = False) -> Dataset:
    """Stanford Cars' official train (8,144 images) or test (8,041) split."""
    base_folder = Path(root) / "stanford_cars"
    annotations, images = _needed(base_folder, split)
    require_files(
        "cars",
        [base_folder / "devkit" / "cars_meta.mat", annotations, images],
        f"Stanford Cars cannot be downloaded (its URLs are dead): extract {_ORIGINAL_FILES} so "
        f"that {base_folder} holds devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
        f"cars_train/ (8,144 jpg), cars_test_annos_withlabels.mat and cars_test/ (8,041 jpg)",
    )
    base = StanfordCars(str(root), split=split)
    if len(base.classes) != len(STANFORD_CARS_CLASSNAMES):
        raise IncompleteDatasetError(
            f"cars: {base_folder / 'devkit' / 'cars_meta.mat'} lists {len(base.classes)} "
            f"classes, expected {len(STANFORD_CARS_CLASSNAMES)}"
        )
    samples = base._samples  # torchvision keeps (path, 0-based label) here
    return checked_image_files(
        "cars", base_folder, samples, STANFORD_CARS_CLASSNAMES, annotations, listing=annotations
    )


register_dataset(
    DatasetInfo(
        name="cars",
        classnames=STANFORD_CARS_CLASSNAMES,
        templates=STANFORD_CARS_TEMPLATES,
        load=load_stanford_cars,
        description="Stanford Cars: 16,185 photos of 196 car models (manual download)",
        split_source="official: 8,144 train / 8,041 test",
    )
)
