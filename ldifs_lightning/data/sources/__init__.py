"""Loaders of the paper's datasets (plus SUN397 and STL-10); importing this registers them.

One module per dataset family. Each ``load_*(root, split, download)`` validates the layout under
``root`` first (one-line errors that say what to put where), then reads it, with torchvision where
torchvision has a loader, and returns a dataset with ``sample_ids`` and ``targets``.
"""

from ldifs_lightning.data.sources import (  # noqa: F401  (each module registers its datasets)
    cifar,
    dtd,
    eurosat,
    gtsrb,
    imagenet,
    mnist,
    resisc45,
    stanford_cars,
    stl10,
    sun397,
    svhn,
)
