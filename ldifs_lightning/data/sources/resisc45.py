"""NWPU-RESISC45: not in torchvision; read as an image folder with the official split lists.

Layout: ``ROOT/resisc45/NWPU-RESISC45/<class>/<class>_<nnn>.jpg`` (45 folders, 700 images each)
and, for the split of Neumann et al. 2019 (used by torchgeo and the LDIFS reference code),
``ROOT/resisc45/resisc45-{train,test}.txt`` (one file name a line). Train is
``resisc45-train.txt`` (18,900), test ``resisc45-test.txt`` (6,300); ``resisc45-val.txt`` is not
used (the package holds out its own validation split from train). Without the lists the package
uses split ``seeded-v1``: 20% of each class as test, ranked by ``sha256("0:<relative path>")``.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from ldifs_lightning.data.classnames.resisc45 import RESISC45_CLASSNAMES, RESISC45_FOLDERS
from ldifs_lightning.data.errors import DatasetNotFoundError
from ldifs_lightning.data.layout import require_class_folders, require_files
from ldifs_lightning.data.listing import checked_image_files, held_out_split, listed_split
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import RESISC45_TEMPLATES

# Split "seeded-v1" (used only without the official lists). Changing a value changes the test set.
TEST_FRACTION = 0.2
TEST_SEED = 0
SPLIT_LIST_URL = "https://storage.googleapis.com/remote_sensing_representations/resisc45-{}.txt"
SPLIT_LIST_MD5 = {
    "train": "b5a4c05a37de15e4ca886696a85c403e",
    "val": "a0770cee4c5ca20b8c32bbd61e114805",
    "test": "3dda9e4988b47eb1de9f07993653eb08",
}


def _split_list(base_folder: Path, split: Split) -> Path:
    return base_folder / f"resisc45-{split}.txt"


def load_resisc45(root: Path, split: Split, download: bool = False) -> Dataset:
    """RESISC45's official train/test lists when present, else the seeded-v1 split."""
    base_folder = Path(root) / "resisc45"
    image_folder = base_folder / "NWPU-RESISC45"
    # download is accepted for a uniform interface; the images have no stable public URL.
    require_files(
        "resisc45",
        [image_folder],
        f"RESISC45 cannot be downloaded automatically: extract NWPU-RESISC45.rar (45 class "
        f"folders, 31,500 jpg) into {base_folder}, and optionally add the split lists "
        f"{SPLIT_LIST_URL.format('train')} and {SPLIT_LIST_URL.format('test')} there",
    )
    require_class_folders("resisc45", image_folder, RESISC45_FOLDERS)
    samples = ImageFolder(str(image_folder)).samples
    dataset = checked_image_files(
        "resisc45", base_folder, samples, RESISC45_CLASSNAMES, image_folder
    )
    lists = {name: _split_list(base_folder, name) for name in ("train", "test")}
    present = [name for name, path in lists.items() if path.is_file()]
    if len(present) == 1:
        missing = next(path for path in lists.values() if not path.is_file())
        raise DatasetNotFoundError(
            f"resisc45: {missing} is missing while {lists[present[0]]} exists; add it "
            f"({SPLIT_LIST_URL.format(missing.stem.split('-')[1])}) or remove both to use the "
            f"seeded-v1 split"
        )
    if present:
        listing = lists[split]
        wanted = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        # A listed name like "baseball_diamond_001.jpg" lives in the folder "baseball_diamond".
        listed = [image_folder / name.rsplit("_", 1)[0] / name for name in wanted]
        return listed_split("resisc45", dataset, listed, listing)
    return held_out_split(dataset, split, TEST_FRACTION, TEST_SEED)


register_dataset(
    DatasetInfo(
        name="resisc45",
        classnames=RESISC45_CLASSNAMES,
        templates=RESISC45_TEMPLATES,
        load=load_resisc45,
        description="NWPU-RESISC45: 31,500 256x256 aerial scenes of 45 classes (manual download)",
        split_source="official lists resisc45-train.txt 18,900 / resisc45-test.txt 6,300 when "
        "present; else seeded-v1: 20% of each class as test (25,200 / 6,300)",
    )
)
