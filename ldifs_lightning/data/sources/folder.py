"""Your own image folder as a dataset: ``folder:PATH`` works wherever a registry name does.

Layout (``PATH`` absolute, or relative to the current directory; ``~`` is expanded)::

    PATH/train/<class>/<image>     one folder per class; labels follow the sorted folder names
    PATH/test/<class>/<image>      optional; without it, the seeded-v1 split below
    PATH/classnames.txt            optional: one class name per line, in sorted-folder order
    PATH/templates.txt             optional: one prompt template per line, with {} or {c}

Images are files with the extensions in ``IMAGE_EXTENSIONS`` (any case), also in subfolders of a
class folder; hidden files and folders (names starting with ``.``) and other files are ignored.
Class names are the folder names with ``_`` read as a space, unless ``classnames.txt`` gives them
(CLIP_benchmark's format). Templates default to CLIP's generic photo set (CIFAR's 18).

Sample ids are paths relative to ``PATH`` (``train/cat/001.jpg``), so splits do not depend on
where the folder is mounted; the dataset's name is ``folder:<resolved PATH>``, so the feature
cache tells two folders apart. Split ``seeded-v1`` (no ``test/``): 20% of each class as test,
ranked by ``sha256("0:<id>")`` (see ``split_held_out``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from ldifs_lightning.data.errors import (
    DatasetError,
    DatasetNotFoundError,
    IncompleteDatasetError,
)
from ldifs_lightning.data.images import ImageFileDataset
from ldifs_lightning.data.layout import preview
from ldifs_lightning.data.listing import checked_image_files, held_out_split
from ldifs_lightning.data.registry import FOLDER_PREFIX, DatasetInfo, Split
from ldifs_lightning.data.templates import CIFAR10_TEMPLATES

PREFIX = FOLDER_PREFIX
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
# Split "seeded-v1". Changing either value changes the test set: add a new version instead.
TEST_FRACTION = 0.2
TEST_SEED = 0
# CLIP's generic photo templates ("a photo of a {}.", "a blurry photo of a {}.", ...).
DEFAULT_TEMPLATES: tuple[str, ...] = CIFAR10_TEMPLATES
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "templates.txt"
_EXPECTED = (
    "expected PATH/train/<class>/<images> and optionally PATH/test/<class>/<images> "
    "(docs/datasets.md, 'Your own image folder')"
)


class FolderFileError(DatasetError, ValueError):
    """An image folder's ``classnames.txt`` or ``templates.txt`` cannot be used."""


@dataclass(frozen=True)
class _Layout:
    """A checked folder: what the user wrote, where it is, its classes, whether it has test/."""

    spec: str
    path: Path
    folders: tuple[str, ...]
    has_test: bool


def is_folder_name(name: object) -> bool:
    """Whether a dataset name is ``folder:PATH``."""
    return isinstance(name, str) and name.startswith(PREFIX)


def resolve_folder(name: str) -> Path:
    """The absolute, symlink-free path that ``folder:PATH`` names (``~`` expanded).

    Example:
        >>> resolve_folder("folder:/data/pets").as_posix()
        '/data/pets'
    """
    spec = name[len(PREFIX) :]
    if not spec:
        raise ValueError(f"{name!r} names no folder: write folder:PATH, e.g. folder:data/pets")
    return Path(spec).expanduser().resolve()


def _is_image(file_name: str) -> bool:
    return not file_name.startswith(".") and Path(file_name).suffix.lower() in IMAGE_EXTENSIONS


def _images(class_folder: Path) -> Iterator[Path]:
    """Image files under ``class_folder`` and its visible subfolders, in no particular order.

    Linked folders are followed, each real folder once: a link back up the tree (a loop) or two
    links to one folder do not list the same images again.
    """
    visited: set[tuple[int, int]] = set()
    for directory, subfolders, files in os.walk(class_folder, followlinks=True):
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in visited:
            subfolders[:] = []
            continue
        visited.add((status.st_dev, status.st_ino))
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for file_name in files:
            if _is_image(file_name):
                yield Path(directory) / file_name


def _class_folders(split_folder: Path) -> list[str]:
    with os.scandir(split_folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _require_images(spec: str, split_folder: Path, folders: list[str]) -> None:
    empty = [name for name in folders if next(_images(split_folder / name), None) is None]
    if empty:
        raise IncompleteDatasetError(
            f"{spec}: {len(empty)} of {len(folders)} class folders under {split_folder} hold no "
            f"images ({', '.join(sorted(IMAGE_EXTENSIONS))}): {preview(empty)}"
        )


def _scan(spec: str, path: Path) -> _Layout:
    """Check the layout (folders only; one image per class is enough to pass)."""
    if not path.is_dir():
        problem = "is not a folder" if path.exists() else "does not exist"
        where = ""
        if not Path(spec[len(PREFIX) :]).expanduser().is_absolute():
            where = f" (a relative PATH is read from the current directory, {Path.cwd()})"
        raise DatasetNotFoundError(f"{spec}: {path} {problem}{where}; {_EXPECTED}")
    train = path / "train"
    if not train.is_dir():
        raise DatasetNotFoundError(f"{spec}: no train/ folder in {path}; {_EXPECTED}")
    folders = _class_folders(train)
    if not folders:
        with os.scandir(train) as entries:
            loose = any(e.is_file() and _is_image(e.name) for e in entries)
        found = " (it holds images directly)" if loose else ""
        raise IncompleteDatasetError(
            f"{spec}: no class folders in {train}{found}; put each class's images in a folder of "
            f"its own, train/<class>/<images>"
        )
    _require_images(spec, train, folders)
    test = path / "test"
    if test.is_dir():
        test_folders = _class_folders(test)
        if not test_folders:
            raise IncompleteDatasetError(
                f"{spec}: no class folders in {test}; put test images in test/<class>/ (named as "
                f"in train/), or remove test/ to hold out 20% of each train class"
            )
        unknown = sorted(set(test_folders) - set(folders))
        if unknown:
            raise IncompleteDatasetError(
                f"{spec}: class folders {preview(unknown)} in {test} are not in {train}; every "
                f"test class must be a train class (labels follow the sorted train/ folder names)"
            )
        _require_images(spec, test, test_folders)
        missing = sorted(set(folders) - set(test_folders))
        if missing:
            rank_zero_warn(
                f"{spec}: {len(missing)} of {len(folders)} classes have no folder in {test}: "
                f"{preview(missing)}; test accuracy leaves them out"
            )
    return _Layout(spec, path, tuple(folders), test.is_dir())


def _numbered_lines(spec: str, file: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines of a UTF-8 text file."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise FolderFileError(f"{spec}: {file} is not UTF-8 text ({error.reason})") from error
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    return [(number, line) for number, line in lines if line]


def _classnames(layout: _Layout) -> tuple[str, ...]:
    file = layout.path / CLASSNAMES_FILE
    if not file.is_file():
        return tuple(folder.replace("_", " ") for folder in layout.folders)
    names = [name for _, name in _numbered_lines(layout.spec, file)]
    if len(names) != len(layout.folders):
        raise FolderFileError(
            f"{layout.spec}: {file} has {len(names)} names but {layout.path / 'train'} has "
            f"{len(layout.folders)} class folders; give one name per line, in the sorted order "
            f"of the folders: {preview(layout.folders)}"
        )
    return tuple(names)


def _is_template(template: str) -> bool:
    """Exactly one ``{}``, and formatting puts the class name in exactly once."""
    marker = "\x00"
    try:
        filled = template.format(marker)
    except (IndexError, KeyError, ValueError):
        return False
    return template.count("{}") == 1 and filled.count(marker) == 1


def _templates(layout: _Layout) -> tuple[str, ...]:
    file = layout.path / TEMPLATES_FILE
    if not file.is_file():
        return DEFAULT_TEMPLATES
    lines = _numbered_lines(layout.spec, file)
    if not lines:
        raise FolderFileError(
            f"{layout.spec}: {file} is empty; give one template per line with {{}} or {{c}} for "
            f"the class name (e.g. 'a photo of a {{}}.'), or delete it for the default templates"
        )
    templates = []
    for number, line in lines:
        template = line.replace("{c}", "{}")  # CLIP_benchmark writes {c}
        if not _is_template(template):
            raise FolderFileError(
                f"{layout.spec}: {file} line {number}: {line!r} needs exactly one {{}} or {{c}} "
                f"for the class name and no other braces"
            )
        templates.append(template)
    return tuple(templates)


def load_folder(layout: _Layout, split: Split) -> ImageFileDataset:
    """A checked folder's ``train`` or ``test`` split: ``test/`` when present, else seeded-v1."""
    source = layout.path / ("test" if split == "test" and layout.has_test else "train")
    samples = [
        (image, label)
        for label, folder in enumerate(layout.folders)
        if (source / folder).is_dir()
        for image in _images(source / folder)
    ]
    # test/ may lack classes (a warning at scan time), so only train's labels must cover all.
    classnames = layout.folders if source.name == "train" else None
    dataset = checked_image_files(layout.spec, layout.path, samples, classnames, source)
    if layout.has_test:
        return dataset
    selected = held_out_split(dataset, split, TEST_FRACTION, TEST_SEED)
    if split == "test" and not len(selected):
        raise IncompleteDatasetError(
            f"{layout.spec}: the seeded test split of {source} is empty (20% of each class, "
            f"rounded; every class has fewer than 3 images); add images or a test/ folder"
        )
    return selected


def folder_dataset_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``folder:PATH``, after checking the folder's layout and text files.

    Its ``name`` is ``folder:<resolved PATH>``; ``load`` ignores the ``root`` it is given.

    Raises:
        DatasetNotFoundError: ``PATH`` or ``PATH/train`` is missing.
        IncompleteDatasetError: No class folders, a class folder without images, or a test class
            that train lacks.
        FolderFileError: ``classnames.txt`` has another number of names than there are classes,
            or ``templates.txt`` is empty or has a line without one placeholder.
    """
    path = resolve_folder(name)
    layout = _scan(name, path)
    classnames, templates = _classnames(layout), _templates(layout)

    def load(root: Path | None, split: Split, download: bool = False) -> Dataset:
        return load_folder(layout, split)

    return DatasetInfo(
        name=f"{PREFIX}{path}",
        classnames=classnames,
        templates=templates,
        load=load,
        description=f"image folder {path} ({len(classnames)} classes)",
        split_source=f"{path / 'test'}"
        if layout.has_test
        else "seeded-v1: 20% of each class of train/ as test, ranked by sha256 of '0:<path>'",
    )
