"""The embedded comparison (`make continual`): every method on the same sequence and budget."""

from __future__ import annotations

import json

import pytest
import yaml

from ldifs_lightning.continual.comparison import METHODS, _folder_name, run_comparison
from tests.continual.test_runner import TINY


def test_each_method_runs_its_config_with_its_weight_and_the_summary_holds_every_run(tmp_path):
    out = tmp_path / "comparison"
    summary = run_comparison(
        out, ["Sequential FT", "LwF weight=10"], fit_args=TINY, epochs=1, cache_dir=None
    )
    assert list(summary["runs"]) == ["Sequential FT", "LwF weight=10"]
    assert summary["tasks"] == ["digits", "fashion", "textures"] and summary["suite"] == ["shapes"]
    assert json.loads((out / "comparison.json").read_text()) == summary
    assert (out / "metrics.csv").is_file() and (out / "foreign.png").is_file()
    stage = yaml.safe_load((out / "lwf-weight-10" / "stage-1-fashion" / "config.yaml").read_text())
    (term,) = stage["model"]["init_args"]["regularizers"]
    assert term["class_path"] == "ldifs_lightning.regularizers.LwF"
    assert term["init_args"]["weight"] == 10.0
    ft = yaml.safe_load((out / "sequential-ft" / "stage-1-fashion" / "config.yaml").read_text())
    assert not ft["model"]["init_args"].get("regularizers")
    for run in summary["runs"].values():
        assert run["seconds"] == pytest.approx(sum(s["seconds"] for s in run["stages"]), abs=0.2)


def test_the_labels_name_distinct_folders_and_unknown_labels_are_refused(tmp_path):
    folders = [_folder_name(label) for label in METHODS]
    assert len(set(folders)) == len(folders)
    assert _folder_name("L2SP alpha=0.5") == "l2sp-alpha-0.5"
    with pytest.raises(ValueError, match="unknown method"):
        run_comparison(tmp_path, ["LDIFS lambda=7"])
    assert list(tmp_path.iterdir()) == []
