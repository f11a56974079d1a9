"""The dataset registry: every dataset the package knows, by name.

An entry knows its class names, its prompt templates and how to load its official splits.
``load(root, split, download)`` returns a ``Dataset`` of ``(PIL image, label)`` pairs; when the
dataset has a ``sample_ids`` attribute (one stable string per sample) the train/val split is derived
from it, otherwise from the sample index.

Besides registered names, ``folder:PATH`` names an image folder (``PATH/train/<class>/*``); its
entry is built on the fly by ``ldifs_lightning.data.sources.folder``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch.utils.data import Dataset

Split = Literal["train", "test"]
#: Prefix of a dataset name that names an image folder: ``folder:PATH``.
FOLDER_PREFIX = "folder:"


@dataclass(frozen=True)
class DatasetInfo:
    """What the package knows about one dataset.

    Attributes:
        name: Registry name, e.g. ``"shapes"``; ``"folder:<resolved path>"`` for an image folder.
        classnames: Human-readable class names in label order, as used in zero-shot prompts.
        templates: Prompt templates, each with one ``{}`` for the class name.
        load: ``load(root, split, download)`` returning the official split as a ``Dataset`` of
            ``(PIL image, label)``.
        description: One line on what the data is and where it comes from.
        split_source: Where the train and test splits come from (official file, seeded rule).
        load_options: Keyword options ``load`` accepts besides ``(root, split, download)``, e.g.
            ``("verify_checksums",)``; the DataModule passes only these.
    """

    name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    load: Callable[..., Dataset]
    description: str = ""
    split_source: str = ""
    load_options: tuple[str, ...] = ()


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to the registry (a name may be registered once)."""
    if info.name in _REGISTRY:
        raise ValueError(f"dataset {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted (``folder:PATH`` names are not listed)."""
    return sorted(_REGISTRY)


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``, or for ``folder:PATH`` an entry built from that folder.

    Unknown names get the registered ones and close matches. A folder's layout, class names and
    templates are checked here, so a bad folder fails before anything is trained.
    """
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX):
        # Imported here: the folder source imports DatasetInfo from this module.
        from ldifs_lightning.data.sources.folder import folder_dataset_info

        return folder_dataset_info(name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" (did you mean {close}?)" if close else ""
        raise ValueError(
            f"unknown dataset {name!r}{hint}; registered: {list_datasets()}, or folder:PATH for "
            f"an image folder"
        )
    return _REGISTRY[name]
