"""DTD (Describable Textures Dataset): torchvision's loader, partition 1.

Layout, as the official archive extracts under ``ROOT/dtd``: ``ROOT/dtd/dtd/images/<class>/*.jpg``
and ``ROOT/dtd/dtd/labels/{train1,val1,test1}.txt``. Train is ``train1.txt`` and test
``test1.txt`` (1,880 images each), as in the LDIFS reference code; ``val1.txt`` is not used (the
package holds out its own validation split from train).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import DTD

from ldifs_lightning.data.classnames.dtd import DTD_CLASSNAMES
from ldifs_lightning.data.errors import IncompleteDatasetError
from ldifs_lightning.data.layout import preview, require_files
from ldifs_lightning.data.listing import checked_image_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import DTD_TEMPLATES

PARTITION = 1


def load_dtd(root: Path, split: Split, download: bool = False) -> Dataset:
    """DTD's partition-1 train (1,880 images) or test (1,880) split."""
    data_folder = Path(root) / "dtd" / "dtd"
    listing = data_folder / "labels" / f"{split}{PARTITION}.txt"
    if download and not listing.is_file():
        DTD(str(root), split=split, partition=PARTITION, download=True)
    require_files(
        "dtd",
        [data_folder / "images", listing],
        f"set download: true, or extract {DTD._URL} (md5 {DTD._MD5}) into {Path(root) / 'dtd'}",
    )
    base = DTD(str(root), split=split, partition=PARTITION)
    missing = sorted(set(DTD_CLASSNAMES) - set(base.classes))
    if missing or len(base.classes) != len(DTD_CLASSNAMES):
        raise IncompleteDatasetError(
            f"dtd: {listing} lists {len(base.classes)} classes, expected DTD's "
            f"{len(DTD_CLASSNAMES)}; missing: {preview(missing)}"
        )
    # torchvision keeps the listed files and their labels here
    samples = list(zip(base._image_files, base._labels, strict=True))
    return checked_image_files(
        "dtd", Path(root) / "dtd", samples, DTD_CLASSNAMES, listing, listing=listing
    )


register_dataset(
    DatasetInfo(
        name="dtd",
        classnames=DTD_CLASSNAMES,
        templates=DTD_TEMPLATES,
        load=load_dtd,
        description="DTD: 5,640 texture photos of 47 describable attributes "
        "(torchvision downloads it)",
        split_source="official partition 1: train1.txt 1,880 / test1.txt 1,880 (val1.txt unused)",
    )
)
