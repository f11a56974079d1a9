"""GTSRB (German Traffic Sign Recognition Benchmark): torchvision's loader.

Layout, as torchvision downloads it: ``ROOT/gtsrb/GTSRB/Training/<00000..00042>/*.ppm`` (train)
and ``ROOT/gtsrb/GTSRB/Final_Test/Images/*.ppm`` with ``ROOT/gtsrb/GT-final_test.csv`` (test).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import GTSRB

from ldifs_lightning.data.classnames.gtsrb import GTSRB_CLASSNAMES, GTSRB_FOLDERS
from ldifs_lightning.data.layout import require_class_folders, require_files
from ldifs_lightning.data.listing import checked_image_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import GTSRB_TEMPLATES

_ARCHIVES = {
    "train": "GTSRB-Training_fixed.zip (md5 513f3c79a4c5141765e10e952eaa2478)",
    "test": "GTSRB_Final_Test_Images.zip (md5 c7e4e6327067d32654124b0fe9e82185) and "
    "GTSRB_Final_Test_GT.zip (md5 fe31e9c9270bbcd7b84b7f21a9d9d9e5)",
}
_SOURCE = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


def load_gtsrb(root: Path, split: Split, download: bool = False) -> Dataset:
    """GTSRB's official train (26,640 images) or test (12,630) split."""
    base_folder = Path(root) / "gtsrb"
    if split == "train":
        target = base_folder / "GTSRB" / "Training"
        needed = [target]
    else:
        target = base_folder / "GTSRB" / "Final_Test" / "Images"
        needed = [target, base_folder / "GT-final_test.csv"]
    if download and not all(path.exists() for path in needed):
        GTSRB(str(root), split=split, download=True)
    require_files(
        "gtsrb",
        needed,
        f"set download: true, or extract {_ARCHIVES[split]} from {_SOURCE} into {base_folder}",
    )
    if split == "train":
        require_class_folders("gtsrb", target, GTSRB_FOLDERS)
    samples = GTSRB(str(root), split=split)._samples  # torchvision keeps (path, label) here
    listing = base_folder / "GT-final_test.csv" if split == "test" else None
    return checked_image_files(
        "gtsrb", base_folder, samples, GTSRB_CLASSNAMES, target, listing=listing
    )


register_dataset(
    DatasetInfo(
        name="gtsrb",
        classnames=GTSRB_CLASSNAMES,
        templates=GTSRB_TEMPLATES,
        load=load_gtsrb,
        description="GTSRB: photos of 43 German traffic signs (torchvision downloads it)",
        split_source="official: 26,640 train / 12,630 test",
    )
)
