"""MNIST: torchvision's loader over the raw idx files.

Layout: ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the four official files,
gunzipped). torchvision only checks that they exist, so no checksum option is needed.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import MNIST

from ldifs_lightning.data.classnames.digits import DIGIT_CLASSNAMES
from ldifs_lightning.data.images import IndexedDataset
from ldifs_lightning.data.layout import require_files
from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.templates import MNIST_TEMPLATES

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_mnist(root: Path, split: Split, download: bool = False) -> Dataset:
    """MNIST's official train (60,000) or test (10,000) split, images as RGB."""
    raw = Path(root) / "MNIST" / "raw"
    # torchvision reads the train and test files whichever split is asked for.
    files = [raw / name for name in RAW_FILES]
    if download and not all(path.is_file() for path in files):
        MNIST(str(root), train=split == "train", download=True)
    require_files(
        "mnist",
        files,
        f"set download: true, or put the four gunzipped idx files ({', '.join(RAW_FILES)}; "
        f"{MNIST.mirrors[0]}) in {raw}",
    )
    base = MNIST(str(root), train=split == "train")
    return IndexedDataset(base, split, base.targets.tolist())


register_dataset(
    DatasetInfo(
        name="mnist",
        classnames=DIGIT_CLASSNAMES,
        templates=MNIST_TEMPLATES,
        load=load_mnist,
        description="MNIST: 70k 28x28 grey handwritten digits (torchvision downloads it)",
        split_source="official: 60,000 train / 10,000 test",
    )
)
