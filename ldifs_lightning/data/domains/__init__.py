"""Small embedded image domains (32x32 RGB) for the offline demo, and their pre-training mix.

Registered in the dataset registry (``ldifs_lightning.data.list_datasets()``):

========== ======= ================================================================ ============
name       classes source                                                           train / test
========== ======= ================================================================ ============
digits     10      scikit-learn's handwritten digits (shipped, 8x8), coloured+jittered 2600 / 400
fashion    10      a Fashion-MNIST subset (shipped, 28x28), coloured and jittered    2400 / 800
shapes     8       procedural shapes (``shapes.py``)                                  2400 / 800
textures   8       procedural textures (``textures.py``)                              2400 / 800
demo-mix   36      all four above, labels offset in that order (pre-training only)    9800 / 2800
========== ======= ================================================================ ============

Shipped files are sha256-checked against ``files/SHA256SUMS`` when first read; provenance and
licences are in ``files/README.md``. Rendering is seeded, so a split has identical bytes on every
load. Arrays are generated once per process and kept (a few tens of MB at most).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ldifs_lightning.data.domains.render import render_glyphs
from ldifs_lightning.data.domains.shapes import SHAPE_CLASSNAMES, generate_shapes
from ldifs_lightning.data.domains.textures import TEXTURE_CLASSNAMES, generate_textures
from ldifs_lightning.data.images import ArrayImageDataset
from ldifs_lightning.data.registry import DatasetInfo, Split, get_dataset_info, register_dataset
from ldifs_lightning.pretrained import verify_shipped_file

FILES = Path(__file__).parent / "files"

DIGIT_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)  # fmt: skip
FASHION_CLASSNAMES: tuple[str, ...] = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip

DIGITS_TEMPLATES = (
    "a photo of the digit {}.",
    "a handwritten {}.",
    "the number {}.",
    "a coloured drawing of the digit {}.",
)
FASHION_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}, a type of clothing.",
    "a small photo of a {}.",
    "a {} on a plain background.",
)
SHAPE_TEMPLATES = ("a photo of a {}.", "a drawing of a {}.", "a {} shape.", "a small {}.")
TEXTURE_TEMPLATES = (
    "a {} texture.",
    "a pattern of {}.",
    "a photo of a {} pattern.",
    "a surface covered in {}.",
)

# Digits: 170 glyphs per class are shipped; the first 130 of each class are train (each rendered
# twice, with different jitter), the last 40 test.
DIGITS_TRAIN_PER_CLASS = 130
DIGITS_TRAIN_COPIES = 2
TEXTURES_SIZES = {"train": 2400, "test": 800}
SEEDS = {"train": 0, "test": 1}
# Shapes predates the per-domain seed offsets below: its splits use SEEDS as they are.
SHAPES_SIZES = {"train": 2400, "test": 800}

#: The domains of the pre-training mix, in label-offset order.
MIX_DOMAINS: tuple[str, ...] = ("digits", "fashion", "shapes", "textures")


@functools.cache
def _shipped(name: str) -> dict[str, np.ndarray]:
    path = verify_shipped_file(FILES / name)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _split_seed(domain: str, split: Split) -> int:
    # Distinct seeds per domain and split, stable across versions of this file.
    return {"digits": 100, "fashion": 200, "textures": 300}[domain] + SEEDS[split]


@functools.cache
def domain_arrays(domain: str, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 32, 32, 3], int64 [N])`` of one embedded domain's split (cached, read-only)."""
    if domain == "digits":
        data = _shipped("digits.npz")
        images, labels = data["images"], data["labels"].astype(np.int64)
        rank = np.zeros(len(labels), np.int64)  # position of each glyph within its class
        for c in range(10):
            rank[labels == c] = np.arange((labels == c).sum())
        keep = rank < DIGITS_TRAIN_PER_CLASS if split == "train" else rank >= DIGITS_TRAIN_PER_CLASS
        copies = DIGITS_TRAIN_COPIES if split == "train" else 1
        glyphs = np.concatenate([images[keep]] * copies)
        labels = np.concatenate([labels[keep]] * copies)
        rendered = render_glyphs(glyphs, seed=_split_seed(domain, split), size_range=(0.55, 0.9))
    elif domain == "fashion":
        data = _shipped("fashion.npz")
        glyphs, labels = data[f"{split}_images"], data[f"{split}_labels"].astype(np.int64)
        rendered = render_glyphs(glyphs, seed=_split_seed(domain, split), size_range=(0.7, 1.0))
    elif domain == "textures":
        rendered, labels = generate_textures(TEXTURES_SIZES[split], seed=_split_seed(domain, split))
    elif domain == "shapes":
        rendered, labels = generate_shapes(SHAPES_SIZES[split], seed=SEEDS[split])
    else:
        raise ValueError(f"unknown embedded domain {domain!r}; known: {list(MIX_DOMAINS)}")
    rendered.setflags(write=False)
    labels.setflags(write=False)
    return rendered, labels


def _loader(domain: str) -> Callable[[Path, Split, bool], Dataset]:
    def load(root: Path, split: Split, download: bool) -> Dataset:
        images, labels = domain_arrays(domain, split)
        return ArrayImageDataset(images, labels, id_prefix=f"{domain}/{split}")

    return load


def mix_classes() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(domain, class name, domain templates)`` for every label of ``demo-mix``, in order."""
    return [
        (domain, name, get_dataset_info(domain).templates)
        for domain in MIX_DOMAINS
        for name in get_dataset_info(domain).classnames
    ]


def _load_mix(root: Path, split: Split, download: bool) -> Dataset:
    images, labels, offset = [], [], 0
    for domain in MIX_DOMAINS:
        domain_images, domain_labels = domain_arrays(domain, split)
        images.append(domain_images)
        labels.append(domain_labels + offset)
        offset += len(get_dataset_info(domain).classnames)
    dataset = ArrayImageDataset(np.concatenate(images), np.concatenate(labels), "demo-mix")
    dataset.sample_ids = [
        f"{domain}/{split}/{index:06d}"
        for domain in MIX_DOMAINS
        for index in range(len(domain_arrays(domain, split)[1]))
    ]
    return dataset


register_dataset(
    DatasetInfo(
        name="digits",
        classnames=DIGIT_WORDS,
        templates=DIGITS_TEMPLATES,
        load=_loader("digits"),
        description="scikit-learn's 8x8 handwritten digits, coloured and jittered at 32x32",
        split_source="seeded: first 130 glyphs per class train (rendered twice), last 40 test",
    )
)
register_dataset(
    DatasetInfo(
        name="fashion",
        classnames=FASHION_CLASSNAMES,
        templates=FASHION_TEMPLATES,
        load=_loader("fashion"),
        description="Fashion-MNIST subset (240/80 per class), coloured and jittered at 32x32",
        split_source="official Fashion-MNIST train/test splits, first images of each class",
    )
)
register_dataset(
    DatasetInfo(
        name="shapes",
        classnames=SHAPE_CLASSNAMES,
        templates=SHAPE_TEMPLATES,
        load=_loader("shapes"),
        description="8 procedural shapes on noisy, cluttered 32x32 backgrounds (generated, seeded)",
    )
)
register_dataset(
    DatasetInfo(
        name="textures",
        classnames=TEXTURE_CLASSNAMES,
        templates=TEXTURE_TEMPLATES,
        load=_loader("textures"),
        description="8 procedural textures with jittered period, colours, occlusion and noise",
        split_source="generated: train seed 300, test seed 301",
    )
)
register_dataset(
    DatasetInfo(
        name="demo-mix",
        classnames=tuple(name for _, name, _ in mix_classes()),
        templates=("a photo of a {}.",),
        load=_load_mix,
        description="digits + fashion + shapes + textures with offset labels (demo pre-training)",
        split_source="the domains' own splits",
    )
)

__all__ = [
    "DIGIT_WORDS",
    "FASHION_CLASSNAMES",
    "MIX_DOMAINS",
    "SHAPE_CLASSNAMES",
    "TEXTURE_CLASSNAMES",
    "domain_arrays",
    "mix_classes",
]
