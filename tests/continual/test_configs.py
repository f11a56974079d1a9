"""Every shipped continual config runs (tiny model, one short epoch per stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ldifs_lightning.config_files import shipped_configs_dir
from tests.continual.test_runner import TINY, _main_in_process
from tests.data.fake_datasets import write_fake_dataset

CONTINUAL = shipped_configs_dir() / "continual"
RUN_CONFIGS = sorted(
    p.stem for p in CONTINUAL.glob("*.yaml") if "tasks" in yaml.safe_load(p.read_text())
)
DEMO_METHODS = sorted(p.stem for p in (CONTINUAL / "demo").glob("*.yaml") if p.stem != "base")


def test_the_shipped_continual_configs_are_all_tested():
    assert RUN_CONFIGS == ["demo", "svhn_cifar10_resisc45"]
    assert DEMO_METHODS == ["ft", "l2sp", "ldifs", "lfl", "lwf", "zscl"]
    stage_configs = {p.name for p in CONTINUAL.glob("*.yaml")} - {f"{n}.yaml" for n in RUN_CONFIGS}
    assert stage_configs == {"vit_b32_data.yaml"}  # run by the ViT-B/32 test below


def _run(args: list[str], cwd: Path) -> dict:
    result = _main_in_process(["continual", *args], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("method", DEMO_METHODS)
def test_the_embedded_sequence_runs_with_every_method(tmp_path, method):
    out = tmp_path / "run"
    result = _run(
        ["--config", "continual/demo", "--method", f"continual/demo/{method}", "--epochs", "1",
         "--out", str(out), "--cache_dir", "null", "--max_train_samples", "40",
         "--max_test_samples", "20", "--fit_args", "[" + ",".join(TINY) + "]"],
        tmp_path,
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["tasks"] == ["digits", "fashion", "textures"]
    assert results["spec"]["suite"] == ["shapes"]
    assert len(results["matrix"]) == 3 and len(results["metrics"]["foreign_delta_lp"]) == 3
    assert "Last" in result.stdout and method in result.stdout


def test_the_vit_b32_sequence_runs_on_tiny_copies_of_its_datasets(tmp_path):
    root = tmp_path / "data"
    for name in ["svhn", "cifar10", "resisc45", "mnist"]:
        write_fake_dataset(name, root)
    out = tmp_path / "run"
    fit_args = [
        "--model.init_args.model_name=ldifs-tiny-vit",
        "--model.init_args.pretrained=demo",
        f"--data.init_args.root={root}",
        "--data.init_args.image_size=32",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        "--data.init_args.verify_checksums=false",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
    ]
    _run(
        ["--config", "continual/svhn_cifar10_resisc45", "--epochs", "1", "--out", str(out),
         "--suite", "[mnist]", "--cache_dir", "null", "--fit_args", "[" + ",".join(fit_args) + "]"],
        tmp_path,
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["tasks"] == ["svhn", "cifar10", "resisc45"]
    assert results["spec"]["head_init"] == "linear_probe"
    assert results["spec"]["method"] == ["methods/ldifs", "continual/vit_b32_data"]
    stage = yaml.safe_load((out / "stage-2-resisc45" / "config.yaml").read_text())
    assert stage["model"]["class_path"] == "ldifs_lightning.LDIFSModule"
    assert stage["model"]["init_args"]["head_init"] == "linear_probe"
    assert stage["model"]["init_args"]["ldifs_weight"] == 10.0


def test_reference_epochs_come_from_the_data_configs_by_default(tmp_path):
    from ldifs_lightning.continual.sequence import stage_epochs

    # SVHN 10, CIFAR-10 10, RESISC45 15: trainer.max_epochs of configs/data/<task>.yaml.
    assert stage_epochs(["svhn", "cifar10", "resisc45"], None, None) == (10, 10, 15)
