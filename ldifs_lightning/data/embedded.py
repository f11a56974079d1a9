"""Datasets generated inside the package: no files, no downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ldifs_lightning.data.registry import DatasetInfo, Split, register_dataset
from ldifs_lightning.data.shapes import SHAPE_CLASSNAMES, generate_shapes


class ArrayImageDataset(Dataset):
    """``(PIL image, label)`` pairs over a ``uint8 [N, H, W, 3]`` array, with stable sample ids."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, id_prefix: str) -> None:
        self.images, self.labels = images, labels
        self.sample_ids = [f"{id_prefix}/{index:06d}" for index in range(len(labels))]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])


# Sizes and seeds of the generated splits; changing them changes the dataset, so they are versioned
# by the dataset name.
SHAPES_SIZES = {"train": 2400, "test": 800}
SHAPES_SEEDS = {"train": 0, "test": 1}


def _load_shapes(root: Path, split: Split, download: bool) -> Dataset:
    images, labels = generate_shapes(SHAPES_SIZES[split], seed=SHAPES_SEEDS[split])
    return ArrayImageDataset(images, labels, id_prefix=f"shapes/{split}")


register_dataset(
    DatasetInfo(
        name="shapes",
        classnames=SHAPE_CLASSNAMES,
        templates=("a photo of a {}.", "a drawing of a {}.", "a {} shape.", "a small {}."),
        load=_load_shapes,
        description="8 procedural shapes on noisy, cluttered 32x32 backgrounds (generated, seeded)",
    )
)
