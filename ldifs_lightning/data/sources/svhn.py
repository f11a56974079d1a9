"""SVHN (cropped digits): torchvision's loader over the official ``.mat`` files (needs scipy).

Layout: ``ROOT/svhn/{train,test}_32x32.mat``. torchvision md5-checks the file even with
``download=False``; ``verify_checksums: false`` reads a user's copy instead.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import SVHN

from ldifs_lightning.data.checksums import require_checksums
from ldifs_lightning.data.classnames.digits import DIGIT_CLASSNAMES
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import require_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.scipy_check import require_scipy
from ldifs_lightning.data.templates import SVHN_TEMPLATES


class _SVHNWithoutMD5(SVHN):
    """torchvision's SVHN, reading a file that exists without comparing its md5."""

    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.filename).is_file()


def load_svhn(
    root: Path, split: Split, download: bool = False, *, verify_checksums: bool = True
) -> Dataset:
    """SVHN's official train (73,257) or test (26,032) split; label ``i`` is digit ``i``."""
    require_scipy("svhn")
    folder = Path(root) / "svhn"
    url, filename, md5 = SVHN.split_list[split]
    path = folder / filename
    if download and not path.is_file():
        SVHN(str(folder), split=split, download=True)
    require_files("svhn", [path], f"set download: true, or download {url} (md5 {md5}) to {path}")
    if verify_checksums:
        require_checksums("svhn", [(path, md5)])
    base = _SVHNWithoutMD5(str(folder), split=split)
    return IndexedDataset(base, split, base.labels.tolist())


register_dataset(
    DatasetInfo(
        name="svhn",
        classnames=DIGIT_CLASSNAMES,
        templates=SVHN_TEMPLATES,
        load=load_svhn,
        description="SVHN: 32x32 crops of house-number digits (torchvision downloads it)",
        split_source="official: 73,257 train / 26,032 test ('extra' unused)",
        load_options=("verify_checksums",),
    )
)
