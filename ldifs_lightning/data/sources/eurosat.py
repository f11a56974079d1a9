"""EuroSAT (RGB): torchvision's loader, with the package's seeded, versioned test split.

Layout, as torchvision downloads it: ``ROOT/eurosat/2750/<class>/<class>_<n>.jpg`` (10 class
folders, 27,000 images). EuroSAT has no official split: split ``seeded-v1`` holds out 10% of each
class as test, the images ranked by ``sha256("0:<relative path>")`` (see ``split_held_out``).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import EuroSAT

from ldifs_lightning.data.classnames.eurosat import EUROSAT_CLASSNAMES, EUROSAT_FOLDERS
from ldifs_lightning.data.layout import require_class_folders, require_files
from ldifs_lightning.data.listing import checked_image_files, held_out_split
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import EUROSAT_TEMPLATES

# Split "seeded-v1". Changing either value changes the test set: register a new version instead.
TEST_FRACTION = 0.1
TEST_SEED = 0
_ARCHIVE = (
    "EuroSAT.zip (md5 c8fa014336c82ac7804f0398fcb19387, "
    "https://huggingface.co/datasets/torchgeo/eurosat)"
)


def load_eurosat(root: Path, split: Split, download: bool = False) -> Dataset:
    """EuroSAT's seeded-v1 train (90% of each class, 24,300) or test (10%, 2,700) split."""
    base_folder = Path(root) / "eurosat"
    data_folder = base_folder / "2750"
    if download and not data_folder.is_dir():
        EuroSAT(str(root), download=True)
    require_files(
        "eurosat",
        [data_folder],
        f"set download: true, or extract {_ARCHIVE} into {base_folder} (it makes 2750/<class>/, "
        f"10 folders, 27,000 jpg)",
    )
    require_class_folders("eurosat", data_folder, EUROSAT_FOLDERS)
    samples = EuroSAT(str(root)).samples
    dataset = checked_image_files("eurosat", base_folder, samples, EUROSAT_CLASSNAMES, data_folder)
    return held_out_split(dataset, split, TEST_FRACTION, TEST_SEED)


register_dataset(
    DatasetInfo(
        name="eurosat",
        classnames=EUROSAT_CLASSNAMES,
        templates=EUROSAT_TEMPLATES,
        load=load_eurosat,
        description="EuroSAT RGB: 27,000 64x64 Sentinel-2 tiles of 10 land-use classes "
        "(torchvision downloads it)",
        split_source="seeded-v1 (no official split): 10% of each class as test, ranked by "
        "sha256 of '0:<path>'; 24,300 train / 2,700 test",
    )
)
