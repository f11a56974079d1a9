"""``folder:PATH``: an image folder as task or forgetting-suite member, from Python, YAML, CLI.

Folders are written here as real files (PNG/JPEG via PIL); each image is a solid colour that
encodes its label (``tests.data.fake_datasets.colour_of``), so label/image pairing is checked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ldifs_lightning import ConceptForgettingCallback, LDIFSModule
from ldifs_lightning.cli import main
from ldifs_lightning.data import FineTuneDataModule, get_dataset_info, list_datasets
from ldifs_lightning.data.errors import (
    CorruptImageError,
    DatasetError,
    DatasetNotFoundError,
    IncompleteDatasetError,
)
from ldifs_lightning.data.sources.folder import DEFAULT_TEMPLATES, FolderFileError, _images
from ldifs_lightning.evaluation import forgetting as forgetting_functions
from ldifs_lightning.evaluation.feature_cache import FeatureCache
from ldifs_lightning.evaluation.forgetting import encoder_accuracies
from ldifs_lightning.evaluation.suite import registry_suite
from ldifs_lightning.models import create_clip
from tests.conftest import TINY_VIT, quiet_trainer
from tests.data.fake_datasets import colour_of, label_of

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "datasets.md"
FOLDER_CONFIG = REPO / "configs" / "data" / "folder.yaml"
LDIFS = REPO / ".venv" / "bin" / "ldifs"


def _image(path: Path, label: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), colour_of(label))
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")


def write_folder(root: Path, train: dict[str, int], test: dict[str, int] | None = None) -> Path:
    """``root/train/<class>/NN.png`` (and ``root/test/...``), coloured by the class's sorted index.

    Args:
        root: The folder to create.
        train: Images per class folder under ``train/``.
        test: Images per class folder under ``test/``, or None for no ``test/``.
    """
    order = sorted(train)
    for split, counts in [("train", train), ("test", test or {})]:
        for folder, count in counts.items():
            for index in range(count):
                label = order.index(folder) if folder in order else len(order)
                _image(root / split / folder / f"{index:02d}.png", label)
    return root


def _pairs(dataset) -> list[tuple[str, int]]:
    return list(zip(dataset.sample_ids, dataset.targets, strict=True))


def _held_out_by_hand(ids_by_class: dict[int, list[str]], fraction: float) -> set[str]:
    """The seeded-v1 rule computed independently: per class, lowest sha256('0:<id>')."""
    held = set()
    for ids in ids_by_class.values():
        ranked = sorted(
            ids, key=lambda sample_id: hashlib.sha256(f"0:{sample_id}".encode()).digest()
        )
        held.update(ranked[: round(fraction * len(ids))])
    return held


# ----------------------------------------------------------------------------- names and labels
def test_class_names_labels_and_ordering(tmp_path):
    root = write_folder(tmp_path / "pets", {"zebra_finch": 3, "Ant": 2, "bee": 2})
    _image(root / "train" / "bee" / "nested" / "deep.JPG", 1)  # subfolders and any case count
    (root / "train" / "bee" / "notes.txt").write_text("not an image")
    (root / "train" / "bee" / ".hidden.png").write_bytes(b"AppleDouble junk")
    _image(root / "train" / ".ipynb_checkpoints" / "x.png", 0)  # hidden folder: not a class
    info = get_dataset_info(f"folder:{root}")
    # Labels follow the sorted folder names (code-point order: upper case first).
    assert info.classnames == ("Ant", "bee", "zebra finch")
    assert info.name == f"folder:{root.resolve()}"
    train = info.load(None, "train")
    test = info.load(None, "test")
    everything = _pairs(train) + _pairs(test)
    assert sorted(sample_id for sample_id, _ in everything) == sorted(
        [f"train/Ant/{i:02d}.png" for i in range(2)]
        + [f"train/bee/{i:02d}.png" for i in range(2)]
        + ["train/bee/nested/deep.JPG"]
        + [f"train/zebra_finch/{i:02d}.png" for i in range(3)]
    )
    for dataset in (train, test):
        for index in range(len(dataset)):
            image, label = dataset[index]
            assert (
                label_of(image)
                == label
                == info.classnames.index(dataset.sample_ids[index].split("/")[1].replace("_", " "))
            )
    assert "folder:" not in " ".join(list_datasets())  # never listed


def test_test_folder_uses_the_train_label_order(tmp_path):
    root = write_folder(tmp_path / "d", {"a": 2, "b": 2, "c": 2}, test={"c": 2, "a": 1})
    with pytest.warns(UserWarning, match=r"1 of 3 classes have no folder in .*test: \[b\]"):
        info = get_dataset_info(f"folder:{root}")
    train, test = info.load(None, "train"), info.load(None, "test")
    assert len(train) == 6  # no hold-out when test/ exists
    assert _pairs(test) == [("test/a/00.png", 0), ("test/c/00.png", 2), ("test/c/01.png", 2)]
    assert [label_of(test[i][0]) for i in range(len(test))] == [0, 2, 2]
    assert info.split_source == str(root.resolve() / "test")


def test_classnames_file_replaces_the_folder_names(tmp_path):
    root = write_folder(tmp_path / "d", {"n01": 1, "n02": 1})
    (root / "classnames.txt").write_text("\ufeffgolden retriever\n\ntabby cat\n", encoding="utf-8")
    assert get_dataset_info(f"folder:{root}").classnames == ("golden retriever", "tabby cat")


def test_templates_file_accepts_both_placeholders(tmp_path):
    root = write_folder(tmp_path / "d", {"cat": 1, "dog": 1})
    assert get_dataset_info(f"folder:{root}").templates == DEFAULT_TEMPLATES
    assert "a photo of a {}." in DEFAULT_TEMPLATES
    (root / "templates.txt").write_text("a photo of a {c}.\n\n  a {} in the wild.  \n")
    info = get_dataset_info(f"folder:{root}")
    assert info.templates == ("a photo of a {}.", "a {} in the wild.")
    data = FineTuneDataModule(f"folder:{root}", image_size=32)
    assert data.templates == info.templates and data.classnames == ("cat", "dog")
    custom = FineTuneDataModule(f"folder:{root}", image_size=32, custom_templates=["art of {}."])
    assert custom.templates == ("art of {}.",)


def test_relative_and_home_paths_resolve(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "home" / "pets", {"cat": 1})
    monkeypatch.chdir(tmp_path / "home")
    assert get_dataset_info("folder:pets").name == f"folder:{root.resolve()}"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_dataset_info("folder:~/pets").name == f"folder:{root.resolve()}"


# ----------------------------------------------------------------------------- seeded split
def test_seeded_split_is_per_class_disjoint_and_matches_the_rule(tmp_path):
    counts = {"a": 10, "b": 7, "c": 3, "d": 1}
    root = write_folder(tmp_path / "d", counts)
    info = get_dataset_info(f"folder:{root}")
    train, test = info.load(None, "train"), info.load(None, "test")
    train_ids, test_ids = set(train.sample_ids), set(test.sample_ids)
    assert not train_ids & test_ids
    assert len(train_ids | test_ids) == sum(counts.values())
    by_class = {
        label: [f"train/{folder}/{i:02d}.png" for i in range(counts[folder])]
        for label, folder in enumerate(sorted(counts))
    }
    assert test_ids == _held_out_by_hand(by_class, 0.2)
    per_class = {folder: sum(1 for i in test_ids if i.split("/")[1] == folder) for folder in counts}
    assert per_class == {folder: round(0.2 * n) for folder, n in counts.items()}
    again = get_dataset_info(f"folder:{root}").load(None, "test")
    assert _pairs(again) == _pairs(test)


def test_seeded_split_ignores_listing_order_and_location(tmp_path, request):
    root = write_folder(tmp_path / "here", {"a": 9, "b": 8})
    first = get_dataset_info(f"folder:{root}").load(None, "test")
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "deeper")
    request.getfixturevalue("reversed_listing")
    second = get_dataset_info(f"folder:{moved}").load(None, "test")
    assert _pairs(second) == _pairs(first) and len(first) == 2 + 2


def test_tiny_classes_give_an_empty_test_split_error(tmp_path):
    root = write_folder(tmp_path / "d", {"a": 2, "b": 1})
    info = get_dataset_info(f"folder:{root}")
    assert len(info.load(None, "train")) == 3
    with pytest.raises(IncompleteDatasetError, match=r"seeded test split .* is empty"):
        info.load(None, "test")


# ----------------------------------------------------------------------------- errors
def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file.png").write_bytes(b"x")
    return tmp_path / "file.png"


def _no_train(tmp_path: Path) -> Path:
    _image(tmp_path / "d" / "cat" / "0.png", 0)
    return tmp_path / "d"


def _no_class_folders(tmp_path: Path) -> Path:
    _image(tmp_path / "d" / "train" / "0.png", 0)
    return tmp_path / "d"


def _empty_class(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"cat": 1})
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "readme.txt").write_text("no images here")
    return root


def _test_only_class(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "d", {"cat": 1}, test={"cat": 1, "dog": 1})


def _empty_test(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"cat": 1})
    (root / "test").mkdir()
    return root


def _classnames_count(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"a": 1, "b": 1, "c": 1})
    (root / "classnames.txt").write_text("ant\nbee\n")
    return root


def _empty_templates(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"a": 1})
    (root / "templates.txt").write_text("\n  \n")
    return root


def _template_without_placeholder(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"a": 1})
    (root / "templates.txt").write_text("a photo of a {}.\na photo.\n")
    return root


def _template_with_two_placeholders(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"a": 1})
    (root / "templates.txt").write_text("a {c} next to a {}.\n")
    return root


def _classnames_not_utf8(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "d", {"a": 1})
    (root / "classnames.txt").write_bytes(b"caf\xe9\n")
    return root


BAD_FOLDERS = [
    (_missing, DatasetNotFoundError, r"nope does not exist; expected PATH/train/<class>"),
    (_a_file, DatasetNotFoundError, r"file\.png is not a folder"),
    (_no_train, DatasetNotFoundError, r"no train/ folder in .*d; expected PATH/train/<class>"),
    (_no_class_folders, IncompleteDatasetError, r"no class folders in .*train \(it holds"),
    (_empty_class, IncompleteDatasetError, r"1 of 2 class folders under .*train hold no"),
    (_test_only_class, IncompleteDatasetError, r"class folders \[dog\] in .*test are not in"),
    (_empty_test, IncompleteDatasetError, r"no class folders in .*test; put test images"),
    (_classnames_count, FolderFileError, r"classnames\.txt has 2 names but .* has 3 class"),
    (_empty_templates, FolderFileError, r"templates\.txt is empty"),
    (_template_without_placeholder, FolderFileError, r"line 2: 'a photo\.' needs exactly"),
    (_template_with_two_placeholders, FolderFileError, r"line 1: .* needs exactly one"),
    (_classnames_not_utf8, FolderFileError, r"classnames\.txt is not UTF-8 text"),
]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    BAD_FOLDERS,
    ids=[make.__name__.lstrip("_") for make, _, _ in BAD_FOLDERS],
)
def test_bad_folders_fail_with_one_line(tmp_path, make, error, message):
    path = make(tmp_path)
    with pytest.raises(error, match=message) as raised:
        FineTuneDataModule(f"folder:{path}", image_size=32)
    text = str(raised.value)
    assert "\n" not in text and str(path.resolve()) in text
    assert isinstance(raised.value, DatasetError)


def test_empty_path_and_relative_hint(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"'folder:' names no folder: write folder:PATH"):
        get_dataset_info("folder:")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"relative PATH is read from the current"):
        get_dataset_info("folder:missing/images")


def test_corrupt_image_fails_at_setup_like_registry_datasets(tmp_path):
    root = write_folder(tmp_path / "d", {"cat": 5, "dog": 5})
    # A file of the train split (not the 20% held out as test), which setup("fit") reads.
    bad_id = get_dataset_info(f"folder:{root}").load(None, "train").sample_ids[-1]
    (root / bad_id).write_bytes(b"not a png")
    data = FineTuneDataModule(f"folder:{root}", image_size=32)
    with pytest.raises(CorruptImageError, match=rf"1 unreadable image file\(s\), first .*{bad_id}"):
        data.setup("fit")
    skipping = FineTuneDataModule(f"folder:{root}", image_size=32, skip_corrupt=True)
    with pytest.warns(UserWarning, match="leaving out 1 unreadable image file"):
        skipping.setup("fit")
    used = {skipping.train_set.dataset.sample_ids[i] for i in skipping.train_set.indices}
    used |= {skipping.val_set.dataset.sample_ids[i] for i in skipping.val_set.indices}
    assert bad_id not in used and len(used) == 8 - 1  # 2 of the 10 are held out as test


# ----------------------------------------------------------------------------- training
def test_folder_task_trains_and_tests_with_the_tiny_model(tmp_path):
    root = write_folder(tmp_path / "d", {"red_thing": 10, "green_thing": 10})
    data = FineTuneDataModule(f"folder:{root}", image_size=32, batch_size=4)
    module = LDIFSModule(
        data.classnames, data.templates, model_name=TINY_VIT, pretrained="demo", lr=1e-3
    )
    trainer = quiet_trainer(tmp_path, max_steps=-1, max_epochs=1)
    trainer.fit(module, datamodule=data)
    # 20 images: 4 held out as test, 2 of the other 16 as val, 14 train in batches of 4.
    assert (len(data.train_set), len(data.val_set)) == (14, 2)
    assert trainer.global_step == math.ceil(14 / 4)
    assert "val/acc" in trainer.callback_metrics and "train/loss" in trainer.callback_metrics
    trainer.test(module, datamodule=data)
    assert 0.0 <= trainer.callback_metrics["test/acc"].item() <= 1.0
    assert len(data.test_set) == 4  # 20% of each class


# ----------------------------------------------------------------------------- forgetting suite
SUITE_CAPS = dict(max_train_samples=24, max_test_samples=16)


def test_folder_in_registry_suite_is_cached_by_its_resolved_path(tmp_path, monkeypatch):
    write_folder(tmp_path / "a" / "imgs", {"cat": 10, "dog": 10})
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # same relative spelling, same files
    calls: list[int] = []
    real = forgetting_functions.extract_features

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(forgetting_functions, "extract_features", counting)
    cache = FeatureCache(tmp_path / "cache")
    encoder = create_clip(TINY_VIT).visual

    def run(where: str) -> tuple[list, dict]:
        monkeypatch.chdir(tmp_path / where)
        # An absolute suite root: the folder member must be told apart by its own path alone.
        suite = registry_suite(["shapes", "folder:imgs"], tmp_path, 32, **SUITE_CAPS)
        accuracies = encoder_accuracies(encoder, suite, metrics=["linear_probe"], cache=cache)
        return suite, accuracies

    suite, first = run("a")
    assert [member.name for member in suite] == ["shapes", "folder:imgs"]
    folder_identity = suite[1].identity["train"]
    assert folder_identity["dataset"] == f"folder:{(tmp_path / 'a' / 'imgs').resolve()}"
    assert set(first) == {"shapes", "folder:imgs"} and len(calls) == 4
    _, again = run("a")
    assert again == first and len(calls) == 4  # every split from the cache
    suite_b, _ = run("b")
    assert suite_b[1].identity["train"]["samples"] == folder_identity["samples"]  # relative ids
    assert len(calls) == 6  # shapes hit the cache; the moved folder was extracted again


def test_forgetting_callback_measures_a_folder_next_to_shapes(tmp_path, monkeypatch):
    write_folder(tmp_path / "imgs", {"cat": 10, "dog": 10})
    monkeypatch.chdir(tmp_path)
    callback = ConceptForgettingCallback(
        ["shapes", "folder:imgs"], cache_dir=None, batch_size=16, **SUITE_CAPS
    )
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=32)
    module = LDIFSModule(
        data.classnames, data.templates, model_name=TINY_VIT, pretrained=None, lr=1e-3
    )
    trainer = quiet_trainer(tmp_path, max_steps=-1, fast_dev_run=1, callbacks=[callback])
    trainer.fit(module, datamodule=data)
    logged = trainer.callback_metrics
    for key in ["lp_acc", "zs_acc", "delta_lp", "delta_zs"]:
        assert f"forgetting/folder:imgs/{key}" in logged and f"forgetting/shapes/{key}" in logged
    assert set(callback.baseline) == {"shapes", "folder:imgs"}


# ----------------------------------------------------------------------------- YAML and CLI
def test_folder_config_is_commented_and_names_folders():
    loaded = yaml.safe_load(FOLDER_CONFIG.read_text())
    assert loaded["data"]["init_args"]["dataset"] == "folder:data/my_images"
    suite = loaded["trainer"]["callbacks"][0]["init_args"]["suite"]
    assert any(member.startswith("folder:") for member in suite)
    lines = FOLDER_CONFIG.read_text().splitlines()
    structural = ("trainer:", "model:", "data:", "class_path:", "init_args:")
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(structural):
            continue
        assert lines[number - 1].strip().startswith("#"), f"folder.yaml:{number + 1}: {line}"


def test_folder_config_runs_with_the_ldifs_method(tmp_path):
    task = write_folder(tmp_path / "task", {"cat": 5, "dog": 5})
    foreign = write_folder(tmp_path / "foreign", {"ant": 5, "bee": 5})
    main(
        [
            "fit",
            "--config",
            str(FOLDER_CONFIG),
            "--config",
            str(REPO / "configs" / "methods" / "ldifs.yaml"),
            "--trainer.fast_dev_run",
            "1",
            "--model.init_args.model_name",
            TINY_VIT,
            "--model.init_args.pretrained",
            "null",
            "--data.init_args.dataset",
            f"folder:{task}",
            "--data.init_args.image_size",
            "32",
            "--data.init_args.batch_size",
            "4",
            "--data.init_args.num_workers",
            "0",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--trainer.callbacks.init_args.suite",
            f"[shapes, folder:{foreign}]",
            "--trainer.callbacks.init_args.max_train_samples",
            "12",
            "--trainer.callbacks.init_args.max_test_samples",
            "8",
            "--trainer.callbacks.init_args.num_workers",
            "0",
            "--trainer.callbacks.init_args.cache_dir",
            "null",
        ]
    )
    with open(tmp_path / "forgetting.csv") as handle:
        measured = {row["dataset"] for row in csv.DictReader(handle)}
    assert measured == {"shapes", f"folder:{foreign}"}


def test_symlinked_folders_are_listed_once_and_loops_end(tmp_path):
    root = write_folder(tmp_path / "pets", {"cat": 2, "dog": 3})
    (root / "train" / "cat" / "self").symlink_to(root / "train" / "cat", target_is_directory=True)
    (root / "train" / "dog" / "sub").mkdir()
    (root / "train" / "dog" / "sub" / "back").symlink_to(root / "train" / "dog")
    assert len(list(_images(root / "train" / "cat"))) == 2  # a link to itself: walked once
    assert len(list(_images(root / "train" / "dog"))) == 3  # a loop through a subfolder: too


def test_ldifs_executable_fits_on_a_folder(tmp_path):
    task = write_folder(tmp_path / "task", {"red": 6, "green": 6, "blue": 6})
    foreign = write_folder(tmp_path / "foreign", {"ant": 5, "bee": 5})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            str(LDIFS),
            "fit",
            "--config",
            str(REPO / "configs" / "demo" / "ldifs.yaml"),
            "--data.init_args.dataset",
            f"folder:{task.relative_to(tmp_path)}",  # relative to the working directory
            "--data.init_args.batch_size",
            "8",
            "--trainer.fast_dev_run",
            "1",
            "--trainer.callbacks.init_args.suite",
            f"[folder:{foreign}]",
            "--trainer.callbacks.init_args.max_train_samples",
            "8",
            "--trainer.callbacks.init_args.max_test_samples",
            "4",
            "--trainer.callbacks.init_args.cache_dir",
            "null",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "forgetting.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["dataset"] for row in rows] == [f"folder:{foreign}"]


# ----------------------------------------------------------------------------- CLIP_benchmark
def _wds_shard(path: Path, samples: list[tuple[str, int, int]]) -> None:
    """A webdataset shard: ``<key>.<ext>`` image (coloured by its label) + ``<key>.cls``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, label, colour in samples:
            for name, payload in [
                (f"{key}.png", _png_bytes(colour)),
                (f"{key}.cls", f"{label}\n".encode()),
            ]:
                member = tarfile.TarInfo(name)
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))


def _png_bytes(label: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour_of(label)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_documented_webdataset_extraction_gives_a_usable_folder(tmp_path):
    text = DOCS.read_text()
    start = text.index("```python\n# python extract_wds.py")
    script = text[start + len("```python\n") : text.index("```", start + 3)]
    (tmp_path / "extract_wds.py").write_text(script)
    source = tmp_path / "wds"
    # 11 classes, so zero-padded folder names must keep "10" after "2" (label order).
    train = [(f"s{i:04d}", i % 11, i % 11) for i in range(33)]
    _wds_shard(source / "train" / "0.tar", train[:20])
    _wds_shard(source / "train" / "1.tar", train[20:])
    _wds_shard(source / "test" / "0.tar", [(f"t{i:04d}", i, i) for i in range(11)])
    names = [f"class {i}" for i in range(11)]
    (source / "classnames.txt").write_text("\n".join(names) + "\n")
    (source / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\n")
    subprocess.run(
        [sys.executable, "extract_wds.py", "wds", "out"], cwd=tmp_path, check=True, timeout=60
    )
    info = get_dataset_info(f"folder:{tmp_path / 'out'}")
    assert info.classnames == tuple(names) and info.templates == ("a photo of a {}.",)
    for split, size in [("train", 33), ("test", 11)]:
        dataset = info.load(None, split)
        assert len(dataset) == size
        assert [label_of(dataset[i][0]) for i in range(size)] == dataset.targets
