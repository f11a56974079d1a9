"""``ldifs compare``: the quick grid end to end through the executable, workers, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ldifs_lightning.compare import run_compare
from ldifs_lightning.compare.grid import METHODS

LDIFS = str(Path(sys.executable).parent / "ldifs")


def _ldifs(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LDIFS, *args], capture_output=True, text=True, cwd=cwd, timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _check_quick_results(out: Path, stdout: str) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert results["setting"]["quick"] is True and results["setting"]["tasks"] == ["textures"]
    rows = results["runs"]
    assert [(r["method"], r["value"]) for r in rows] == [
        (name, method.quick) for name, method in METHODS.items() if name != "wiseft"
    ] + [("wiseft", METHODS["wiseft"].quick)]
    for row in rows:
        assert row["task"] == "textures" and row["seed"] == 0
        assert 0.0 <= row["task_acc"] <= 100.0 and 0.0 <= row["val_acc"] <= 100.0
        assert {"mean_delta_lp", "mean_delta_zs"} <= set(row)
    unchanged = [r for r in rows if r["method"] in ("zs", "lp")]
    assert all(r["mean_delta_lp"] == 0.0 and r["mean_delta_zs"] == 0.0 for r in unchanged)
    assert set(results["summary"]["selected"]) == set(METHODS)
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + len(METHODS) and table[2].startswith("| ZS |")
    for name in ["frontier.png", "frontier-textures.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "Methods on the embedded domains (textures as the task, 1 seed(s))" in stdout
    return results


def test_quick_runs_every_method_end_to_end_through_the_executable(tmp_path):
    # --epochs 1 keeps the default test run short; the slow test below runs --quick as it is.
    result = _ldifs(
        "compare", "--quick", "--epochs", "1", "--cache_dir", "null", "--out", "out", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_quick_results(tmp_path / "out", result.stdout)
    # One progress line per run, not each run's Lightning banners and forgetting table.
    output = result.stdout + result.stderr
    assert "Concept forgetting after epoch" not in output and "GPU available" not in output


@pytest.mark.slow
def test_quick_as_shipped(tmp_path):
    result = _ldifs("compare", "--quick", "--cache_dir", "null", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = _check_quick_results(tmp_path / "out", result.stdout)
    assert results["setting"]["epochs"] is None  # configs/compare/base.yaml's


def test_workers_give_the_rows_one_process_gives(tmp_path):
    options = dict(methods=["zs", "lp"], tasks=["shapes", "digits"], seeds=1, cache_dir=None)
    alone = run_compare(out=tmp_path / "one", **options)
    shared = run_compare(out=tmp_path / "two", workers=2, **options)
    keys = ("task", "seed", "method", "value", "task_acc", "val_acc")
    assert [{k: r[k] for k in keys} for r in alone["runs"]] == [
        {k: r[k] for k in keys} for r in shared["runs"]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "[nope]"], "unknown method(s) ['nope']"),
        (["--seeds", "0"], "seeds=0: run at least one seed"),
        (["--methods", "[ldifs]", "--values", "{ldifs: [-1]}"], "lambda=-1.0 is outside"),
        (["--tasks", "[cifar10]"], "unknown task(s) ['cifar10']"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    from tests.continual.test_runner import _main_in_process

    result = _main_in_process(["compare", "--out", str(tmp_path / "out"), *args], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("error: ") and message in lines[-1]
    assert not (tmp_path / "out").exists()
