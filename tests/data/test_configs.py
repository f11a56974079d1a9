"""configs/data/*.yaml + configs/methods/ldifs.yaml: the paper's runs, checked on tiny copies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ldifs_lightning.cli import main
from ldifs_lightning.data import get_dataset_info
from tests.data.fake_datasets import CHECKSUMMED

REPO = Path(__file__).resolve().parents[2]
# folder.yaml is the template for a user's own images (folder:PATH), not one of the paper's
# datasets; tests/data/test_folder.py runs it.
DATA_CONFIGS = sorted(
    path for path in (REPO / "configs" / "data").glob("*.yaml") if path.stem != "folder"
)
METHOD = REPO / "configs" / "methods" / "ldifs.yaml"
BASE = REPO / "configs" / "base" / "vit_b32.yaml"
REFERENCE_EPOCHS = {
    "cars": 35,
    "dtd": 76,
    "eurosat": 12,
    "gtsrb": 11,
    "mnist": 10,
    "cifar10": 10,
    "cifar100": 10,
    "resisc45": 15,
    "sun397": 14,
    "svhn": 10,
    "imagenet": 10,
    "stl10": 10,
}


def test_there_is_a_config_per_dataset():
    assert sorted(path.stem for path in DATA_CONFIGS) == sorted(REFERENCE_EPOCHS)


@pytest.mark.parametrize("config", DATA_CONFIGS, ids=lambda path: path.stem)
def test_data_config_holds_the_reference_setup(config):
    loaded = yaml.safe_load(config.read_text())
    init_args = loaded["data"]["init_args"]
    assert loaded["data"]["class_path"] == "ldifs_lightning.data.FineTuneDataModule"
    assert init_args["dataset"] == config.stem
    get_dataset_info(config.stem)  # a registered name
    assert loaded["trainer"]["max_epochs"] == REFERENCE_EPOCHS[config.stem]
    assert (init_args["batch_size"], init_args["image_size"]) == (128, 224)
    assert (init_args["val_fraction"], init_args["max_val_samples"]) == (0.1, 20_000)


PAPER_TASKS = {
    "cars",
    "cifar10",
    "cifar100",
    "dtd",
    "eurosat",
    "gtsrb",
    "mnist",
    "resisc45",
    "svhn",
    "imagenet",
}


@pytest.mark.parametrize("config", DATA_CONFIGS, ids=lambda path: path.stem)
def test_data_config_declares_a_foreign_suite(config):
    callbacks = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    forgetting = [c for c in callbacks if c["class_path"].endswith("ConceptForgettingCallback")]
    assert len(forgetting) == 1
    suite = forgetting[0]["init_args"]["suite"]
    assert set(suite) == PAPER_TASKS - {config.stem}  # the paper's other tasks
    for name in suite:
        get_dataset_info(name)


def test_method_config_holds_the_reference_hyper_parameters():
    # The reference ViT-B/32 setup lives once, in the base every method config builds on.
    base = yaml.safe_load(BASE.read_text())
    method = yaml.safe_load(METHOD.read_text())
    assert method["config"] == "../base/vit_b32.yaml"
    init_args = {**base["model"]["init_args"], **method["model"]["init_args"]}
    assert base["model"]["class_path"] == "ldifs_lightning.FineTuneModule"
    assert method["model"]["class_path"] == "ldifs_lightning.LDIFSModule"
    assert (init_args["model_name"], init_args["pretrained"]) == ("ViT-B-32", "openai")
    assert (init_args["lr"], init_args["weight_decay"], init_args["warmup_steps"]) == (
        1e-5,
        0.1,
        500,
    )
    assert (init_args["ldifs_weight"], init_args["normalize"]) == (10.0, "token")
    assert base["trainer"] == {"precision": "32-true", "gradient_clip_val": 1.0}
    assert base["seed_everything"] == 0


@pytest.mark.parametrize("config", [*DATA_CONFIGS, METHOD, BASE], ids=lambda path: path.stem)
def test_every_key_is_commented(config):
    lines = config.read_text().splitlines()
    structural = ("trainer:", "model:", "data:", "class_path:", "init_args:")
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(structural):
            continue
        assert lines[number - 1].strip().startswith("#"), f"{config.name}:{number + 1}: {line}"


@pytest.mark.parametrize("config", DATA_CONFIGS, ids=lambda path: path.stem)
def test_paper_run_config_runs_on_a_tiny_copy(config, fake_copies, tmp_path):
    name = config.stem
    extra = []
    if name in CHECKSUMMED:
        extra += ["--data.init_args.verify_checksums", "false"]
    if name == "imagenet":  # 1000 classes x 80 templates would take the tiny text tower ~20 s
        extra += ["--data.init_args.custom_templates", '["a photo of a {}."]']
    main(
        [
            "fit",
            "--config",
            str(config),
            "--config",
            str(METHOD),
            "--trainer.fast_dev_run",
            "1",
            "--model.init_args.model_name",
            "ldifs-tiny-vit",
            "--model.init_args.pretrained",
            "null",
            "--data.init_args.image_size",
            "32",
            "--data.init_args.root",
            str(fake_copies[name].root),
            "--data.init_args.batch_size",
            "4",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.download",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            # The forgetting suite reads the same tiny copies. Two datasets stand in for the
            # config's nine (whose names test_data_config_declares_a_foreign_suite checks):
            # probes and zero-shot heads for 1000 ImageNet classes would dominate this test.
            "--trainer.callbacks.init_args.suite",
            "[mnist, cifar10]" if name != "mnist" else "[svhn, cifar10]",
            "--trainer.callbacks.init_args.root",
            str(fake_copies[name].root),
            "--trainer.callbacks.init_args.verify_checksums",
            "false",
            "--trainer.callbacks.init_args.max_train_samples",
            "12",
            "--trainer.callbacks.init_args.max_test_samples",
            "8",
            "--trainer.callbacks.init_args.num_workers",
            "0",
            "--trainer.callbacks.init_args.cache_dir",
            "null",
            *extra,
        ]
    )
