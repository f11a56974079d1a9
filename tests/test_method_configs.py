"""Every configs/methods/*.yaml runs fast_dev_run through the CLI on a tiny model and `shapes`."""

from pathlib import Path

import pytest

from ldifs_lightning.cli import main
from tests.data.fake_datasets import write_fake_dataset

REPO = Path(__file__).resolve().parents[1]
METHODS = sorted((REPO / "configs" / "methods").glob("*.yaml"))
TINY_SHAPES = [
    "--data", "ldifs_lightning.data.FineTuneDataModule",
    "--data.init_args.dataset", "shapes",
    "--data.init_args.image_size", "32",
    "--data.init_args.batch_size", "8",
    "--data.init_args.max_train_samples", "32",
    "--model.init_args.model_name", "ldifs-tiny-vit",
    "--model.init_args.pretrained", "demo",
]  # fmt: skip


def test_one_config_per_method():
    names = {path.stem for path in METHODS}
    expected = {"ft", "lp", "lpft", "ls", "l2sp", "flyp", "flyp_ce", "wiseft", "lwf", "lfl", "zscl"}
    assert expected <= names


@pytest.mark.parametrize("config", METHODS, ids=lambda p: p.stem)
def test_method_config_runs_fast_dev_run(config, tmp_path):
    extra = []
    if config.stem == "zscl":  # its reference data is ImageNet: a tiny copy in ImageNet's format
        write_fake_dataset("imagenet", tmp_path / "data")
        extra = ["--model.init_args.regularizers.init_args.root", str(tmp_path / "data")]
    main(
        [
            "fit",
            "--config", str(config),
            *TINY_SHAPES,
            *extra,
            "--trainer.fast_dev_run", "1",
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.enable_progress_bar", "false",
        ]
    )  # fmt: skip
