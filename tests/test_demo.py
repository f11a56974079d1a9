"""`make demo`'s driver: runs the FT and LDIFS configs and writes one comparable summary."""

import json
from pathlib import Path

import pytest
import yaml

from ldifs_lightning.demo import METHODS, format_comparison, main, run_demo

REPO = Path(__file__).resolve().parents[1]


def _small_configs(folder: Path) -> Path:
    """configs/demo/{ft,ldifs}.yaml shrunk to a smoke test (same keys, tiny sizes)."""
    folder.mkdir()
    for name in ("ft.yaml", "ldifs.yaml"):
        config = yaml.safe_load((REPO / "configs/demo" / name).read_text())
        config["trainer"]["max_epochs"] = 1
        config["data"]["init_args"]["max_train_samples"] = 64
        forgetting = config["trainer"]["callbacks"][0]["init_args"]
        forgetting.update(max_train_samples=60, max_test_samples=30, cache_dir=None)
        (folder / name).write_text(yaml.safe_dump(config))
    return folder


def test_demo_configs_compare_the_same_run_with_and_without_ldifs():
    ft = yaml.safe_load((REPO / "configs/demo/ft.yaml").read_text())
    ldifs = yaml.safe_load((REPO / "configs/demo/ldifs.yaml").read_text())
    assert ft["model"]["init_args"].pop("ldifs_weight") == 0.0
    assert ldifs["model"]["init_args"].pop("ldifs_weight") > 0
    assert ft["model"]["init_args"] == ldifs["model"]["init_args"]
    assert ft["model"]["init_args"]["pretrained"] == "demo"
    assert ft["data"] == ldifs["data"]
    ft["trainer"].pop("default_root_dir"), ldifs["trainer"].pop("default_root_dir")
    assert ft["trainer"] == ldifs["trainer"]
    suite = ft["trainer"]["callbacks"][0]["init_args"]["suite"]
    assert ft["data"]["init_args"]["dataset"] not in suite and len(suite) >= 2


def test_run_demo_writes_summary_plots_and_table(tmp_path, capsys):
    configs = _small_configs(tmp_path / "configs")
    summary = run_demo(tmp_path / "out", methods=["ft", "ldifs"], configs=configs)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(written) == {"ft", "ldifs"} == set(summary)
    for name, row in written.items():
        assert 0 <= row["task_acc"] <= 100
        assert set(row["domains"]) == {"digits", "fashion", "shapes"}
        for key in ("mean_delta_lp", "mean_delta_zs"):
            assert isinstance(row[key], float)
        assert {"delta_lp", "delta_zs"} <= set(row["domains"]["digits"])
        run_dir = tmp_path / "out" / name
        assert (run_dir / "forgetting.csv").is_file() and (run_dir / "forgetting.png").is_file()
    assert written["ldifs"]["ldifs_weight"] > 0 == written["ft"]["ldifs_weight"]
    assert (tmp_path / "out" / "comparison.png").is_file()
    printed = capsys.readouterr().out
    assert "mean dZS" in printed and str(tmp_path / "out") in printed
    assert format_comparison(summary).count("\n") == 3  # header, rule, two methods


def test_unknown_method_is_one_line():
    with pytest.raises(ValueError, match="unknown demo method"):
        run_demo("unused", methods=["sgd"])
    assert set(METHODS) >= {"ft", "ldifs", "ft-low-lr"}


def test_main_rejects_unknown_method():
    with pytest.raises(SystemExit):
        main(["--methods", "nope"])
