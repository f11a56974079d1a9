"""`make demo`'s driver: runs the FT and LDIFS configs and writes one comparable summary."""

import argparse
import json
from pathlib import Path
from typing import get_args

import pytest
import torch
import yaml

from ldifs_lightning import demo as demo_module
from ldifs_lightning.cli import build_cli
from ldifs_lightning.config_files import shipped_configs_dir
from ldifs_lightning.demo import (
    DEMO_METHODS,
    METHODS,
    SWEEP_METHODS,
    DemoMethod,
    demo,
    format_comparison,
    logged_range,
    run_demo,
)

REPO = Path(__file__).resolve().parents[1]


def _small_configs(folder: Path) -> Path:
    """configs/demo/{ft,ldifs}.yaml shrunk to a smoke test (same keys, tiny sizes)."""
    folder.mkdir()
    for name in ("ft.yaml", "ldifs.yaml"):
        config = yaml.safe_load((REPO / "configs/demo" / name).read_text())
        config["trainer"]["max_epochs"] = 1
        # Two steps, both logged: the LDIFS distance is 0 at the first (nothing has moved yet).
        config["trainer"]["log_every_n_steps"] = 1
        config["data"]["init_args"]["max_train_samples"] = 128
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
    # ldifs-10 is a sweep run: ldifs.yaml with its lambda overridden on the command line.
    summary = run_demo(tmp_path / "out", methods=["ft", "ldifs-10"], configs=configs)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(written) == {"ft", "ldifs-10"} == set(summary)
    for name, row in written.items():
        assert 0 <= row["task_acc"] <= 100
        assert row["task_test_images"] == 800  # textures' whole test split
        assert set(row["domains"]) == {"digits", "fashion", "shapes"}
        for key in ("mean_delta_lp", "mean_delta_zs"):
            assert isinstance(row[key], float)
        assert {"delta_lp", "delta_zs"} <= set(row["domains"]["digits"])
        assert (row["seed"], row["threads"], row["torch"]) == (
            0,
            torch.get_num_threads(),
            torch.__version__,
        )
        run_dir = tmp_path / "out" / name
        assert (run_dir / "forgetting.csv").is_file() and (run_dir / "forgetting.png").is_file()
        assert row["train_log"] == logged_range(
            run_dir / "metrics.csv", ("train/ce", "train/ldifs")
        )
    assert written["ldifs-10"]["ldifs_weight"] == 10.0 and written["ft"]["ldifs_weight"] == 0
    assert written["ldifs-10"]["train_log"]["train/ldifs"]["max"] > 0
    # No LDIFS term without lambda: logged as 0, or not logged at all.
    assert written["ft"]["train_log"].get("train/ldifs", {"max": 0.0})["max"] == 0
    assert (tmp_path / "out" / "comparison.png").is_file()
    printed = capsys.readouterr().out
    assert "mean dZS" in printed and str(tmp_path / "out") in printed
    assert format_comparison(summary).count("\n") == 3  # header, rule, two methods


def test_logged_range_over_the_steps_that_logged_each_key(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,train/ce,val/acc\n0,0.9,\n1,,0.5\n2,0.3,\n3,0.5,\n")
    assert logged_range(path, ["train/ce", "val/acc", "train/ldifs"]) == {
        "train/ce": {"min": 0.3, "median": 0.5, "max": 0.9},
        "val/acc": {"min": 0.5, "median": 0.5, "max": 0.5},
    }


def test_sweep_is_the_demo_plus_other_lambdas_and_learning_rates():
    assert set(DEMO_METHODS) <= set(SWEEP_METHODS) <= set(METHODS)
    lambdas = [float(METHODS[n].extra[1]) for n in SWEEP_METHODS if n.startswith("ldifs-")]
    assert lambdas == [10.0, 100.0, 1000.0, 3000.0]
    with pytest.raises(ValueError, match="not both"):
        demo(methods=["ft"], sweep=True)


def test_the_typed_choices_are_the_methods():
    assert list(get_args(DemoMethod)) == list(METHODS)


def test_unknown_method_is_one_line():
    with pytest.raises(ValueError, match="unknown demo method"):
        run_demo("unused", methods=["sgd"])
    assert set(METHODS) >= {"ft", "ldifs", "ft-low-lr"}


def test_the_demo_reads_the_shipped_configs():
    folder = demo_module._configs_dir(None)
    assert folder == shipped_configs_dir() / "demo"
    assert (
        demo_module._shown(folder / "ft.yaml") == "configs/demo/ft.yaml"
    )  # as summary.json has it


@pytest.fixture
def recorded_runs(monkeypatch):
    """``run_demo`` replaced by a recorder: what ``ldifs demo ...`` would run."""
    calls = []
    monkeypatch.setattr(demo_module, "run_demo", lambda *args: calls.append(args) or {})
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("threads", n)))
    return calls


@pytest.mark.parametrize(
    ("args", "methods", "fit_args"),
    [
        ([], DEMO_METHODS, ()),
        (["--sweep"], SWEEP_METHODS, ()),
        (["--methods", "[ft,ldifs-10]"], ("ft", "ldifs-10"), ()),
        (["--methods", "ft"], ("ft",), ()),
        (["--fit_args=[--trainer.max_epochs=3]"], DEMO_METHODS, ["--trainer.max_epochs=3"]),
    ],
)
def test_ldifs_demo_subcommand_runs_the_chosen_methods(recorded_runs, args, methods, fit_args):
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["demo", *args, "--out", "somewhere"])
    assert exit_info.value.code == 0
    assert recorded_runs == [("threads", 1), (Path("somewhere"), methods, None, fit_args)]


@pytest.mark.parametrize("args", [["--methods", "nope"], ["--methods", "[ft,nope]"]])
def test_ldifs_demo_rejects_unknown_methods_before_running(recorded_runs, args):
    with pytest.raises(argparse.ArgumentError, match="ldifs-3000"):  # the allowed names
        build_cli(["demo", *args])
    assert recorded_runs == []
