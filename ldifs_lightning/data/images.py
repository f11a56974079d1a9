"""Datasets of ``(RGB PIL image, int label)`` with stable sample ids, over files, torchvision or
in-memory arrays.

Each class exposes ``sample_ids`` (one stable string per sample, the key of every split) and its
labels (``targets``, or ``labels`` for arrays), readable without decoding an image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ldifs_lightning.data.errors import CorruptImageError


class ImageFileDataset(Dataset):
    """Images stored as files under one folder, ordered by their relative path.

    The sample id of an image is its path relative to ``root`` with ``/`` separators, so ids, order
    and splits are the same on every machine whatever order the file system lists files in.
    An unreadable file raises ``CorruptImageError`` naming it; nothing is skipped silently.

    Args:
        root: The dataset's folder.
        files: ``(relative path, label)`` pairs.

    Example:
        >>> dataset = ImageFileDataset(Path("data/eurosat"), [("2750/River/River_1.jpg", 8)])
        >>> dataset.sample_ids, dataset.targets
        (['2750/River/River_1.jpg'], [8])
    """

    def __init__(self, root: Path, files: Iterable[tuple[str | Path, int]]) -> None:
        pairs = sorted((Path(relative).as_posix(), int(label)) for relative, label in files)
        self.root = Path(root)
        self.sample_ids = [relative for relative, _ in pairs]
        self.targets = [label for _, label in pairs]

    @classmethod
    def from_paths(cls, root: Path, samples: Iterable[tuple[str | Path, int]]) -> ImageFileDataset:
        """From ``(path under root, label)`` pairs, e.g. torchvision's ``ImageFolder.samples``."""
        return cls(root, [(Path(path).relative_to(root), label) for path, label in samples])

    @property
    def paths(self) -> list[Path]:
        return [self.root / relative for relative in self.sample_ids]

    def select(self, indices: Sequence[int]) -> ImageFileDataset:
        """The samples at ``indices``, as a dataset of the same kind."""
        return ImageFileDataset(
            self.root, [(self.sample_ids[index], self.targets[index]) for index in indices]
        )

    def select_ids(self, sample_ids: Iterable[str]) -> ImageFileDataset:
        """The samples with the given ids (e.g. an official split list), in id order."""
        index_of = {sample_id: index for index, sample_id in enumerate(self.sample_ids)}
        return self.select(sorted(index_of[sample_id] for sample_id in sample_ids))

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path = self.root / self.sample_ids[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for bad files
            raise CorruptImageError(f"cannot read image {path}: {error}") from error
        return rgb, self.targets[index]


class IndexedDataset(Dataset):
    """A torchvision dataset of in-memory images, with RGB images and ids ``"<split>/<index>"``.

    Args:
        base: Dataset returning ``(PIL image, label)``.
        split: Prefix of the sample ids (``"train"`` or ``"test"``).
        targets: The labels of ``base``, in order.

    Example:
        >>> from torchvision.datasets import FakeData
        >>> dataset = IndexedDataset(FakeData(size=2), "train", [0, 1])
        >>> dataset.sample_ids
        ['train/000000', 'train/000001']
    """

    def __init__(self, base: Dataset, split: str, targets: Iterable[int]) -> None:
        self.base = base
        self.targets = [int(label) for label in targets]
        self.sample_ids = [f"{split}/{index:06d}" for index in range(len(self.targets))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image, _ = self.base[index]
        return image.convert("RGB"), self.targets[index]


class ArrayImageDataset(Dataset):
    """``(PIL image, label)`` pairs over a ``uint8 [N, H, W, 3]`` array, with stable sample ids.

    Example:
        >>> images = np.zeros((2, 4, 4, 3), np.uint8)
        >>> ArrayImageDataset(images, np.array([0, 1]), id_prefix="shapes/train").sample_ids
        ['shapes/train/000000', 'shapes/train/000001']
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, id_prefix: str) -> None:
        self.images, self.labels = images, labels
        self.sample_ids = [f"{id_prefix}/{index:06d}" for index in range(len(labels))]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])
