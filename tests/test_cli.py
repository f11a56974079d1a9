"""The `ldifs` command end to end: every shipped config, DDP, resume, --version, bad input."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ldifs_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
# configs/data and configs/methods need dataset files: tests/data runs them on tiny copies.
CONFIGS = sorted((REPO / "configs" / "demo").glob("*.yaml"))
SMALL_DATA = ["--data.init_args.batch_size", "8", "--data.init_args.max_train_samples", "32"]


def _quiet(tmp_path: Path) -> list[str]:
    return [
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_runs_fast_dev_run(config, tmp_path):
    main(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.fast_dev_run",
            "1",
            *SMALL_DATA,
            *_quiet(tmp_path),
        ]
    )


def test_configs_exist():
    assert CONFIGS, "no YAML files under configs/"


def test_print_config_shows_linked_and_default_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs/demo/ldifs.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed_everything"] == 0
    assert printed["model"]["init_args"]["ldifs_weight"] == 300.0  # the demo's swept lambda
    assert printed["model"]["init_args"]["normalize"] == "token"


def test_version_flag():
    result = subprocess.run(
        [sys.executable, "-m", "ldifs_lightning", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("ldifs-lightning ")


def test_config_is_saved_next_to_the_logs(tmp_path):
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/demo/ldifs.yaml"),
            "--trainer.max_steps",
            "1",
            "--trainer.limit_val_batches",
            "1",
            *SMALL_DATA,
            *_quiet(tmp_path),
        ]
    )
    saved = yaml.safe_load((tmp_path / "lightning_logs/version_0/config.yaml").read_text())
    assert saved["model"]["init_args"]["model_name"] == "ldifs-tiny-vit"
    assert saved["data"]["init_args"]["max_train_samples"] == 32
    assert "classnames" not in saved["model"]["init_args"]  # linked from the data, not configured


def _train_losses(metrics_csv: Path) -> dict[int, float]:
    with metrics_csv.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    return {int(row["step"]): float(row["train/loss"]) for row in rows}


@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
@pytest.mark.parametrize(
    ("checkpoint", "every_n_train_steps"),
    [("epoch=0-*.ckpt", None), ("epoch=0-step=2.ckpt", "1")],
    ids=["end-of-epoch", "mid-epoch"],
)
def test_resume_from_checkpoint_matches_uninterrupted_run(
    tmp_path, checkpoint, every_n_train_steps
):
    # 4 steps per epoch. Mid-epoch, the train loader skips the 2 batches already trained on
    # (without that, the resumed epoch would start again from its first batch).
    every = [] if every_n_train_steps is None else [
        "--trainer.callbacks.every_n_train_steps", every_n_train_steps
    ]  # fmt: skip
    common = [
        "--config",
        str(REPO / "configs/demo/ldifs.yaml"),
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.callbacks",
        "lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.save_top_k",
        "-1",
        *every,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *SMALL_DATA,
    ]
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    main(
        [
            "fit",
            *common,
            "--trainer.logger.save_dir",
            str(full_dir),
            "--trainer.default_root_dir",
            str(full_dir),
        ]
    )
    checkpoints = sorted(full_dir.rglob(checkpoint))
    assert len(checkpoints) == 1
    main(
        [
            "fit",
            *common,
            "--trainer.logger.save_dir",
            str(resumed_dir),
            "--trainer.default_root_dir",
            str(resumed_dir),
            "--ckpt_path",
            str(checkpoints[0]),
        ]
    )
    full = _train_losses(next(full_dir.rglob("metrics.csv")))
    resumed = _train_losses(next(resumed_dir.rglob("metrics.csv")))
    first = 4 if every_n_train_steps is None else 2  # the step the resumed run starts at
    assert sorted(resumed) == [step for step in sorted(full) if step >= first]
    for step, loss in resumed.items():
        assert loss == pytest.approx(full[step], abs=1e-6), step


def test_two_process_ddp_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ldifs_lightning",
            "fit",
            "--config",
            str(REPO / "configs/demo/ldifs.yaml"),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            *SMALL_DATA,
            *_quiet(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout
    assert "LeafSpec" not in result.stderr  # Lightning's internal deprecation notice is hidden


@pytest.mark.slow
def test_two_process_ddp_resumes_mid_epoch_as_the_uninterrupted_run(tmp_path):
    # 32 samples, 8 per rank and step: 2 steps per epoch; resumed after the first.
    def fit(out: Path, *extra: str) -> dict[int, float]:
        command = [
            sys.executable, "-m", "ldifs_lightning", "fit",
            "--config", str(REPO / "configs/demo/ldifs.yaml"),
            "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
            "--trainer.limit_val_batches", "1",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir", str(out),
            "--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.save_top_k", "-1",
            "--trainer.callbacks.every_n_train_steps", "1",
            *SMALL_DATA, *_quiet(out), *extra,
        ]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return _train_losses(next(out.rglob("metrics.csv")))

    full = fit(tmp_path / "full")
    (checkpoint,) = (tmp_path / "full").rglob("epoch=0-step=1.ckpt")
    resumed = fit(tmp_path / "resumed", "--ckpt_path", str(checkpoint))
    assert sorted(full) == [0, 1, 2, 3] and sorted(resumed) == [1, 2, 3]
    for step, loss in resumed.items():  # rank 0's losses
        assert loss == pytest.approx(full[step], abs=1e-6), step
