"""A continual sequence under 2-process DDP (gloo on CPU), through the ``ldifs`` executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LDIFS = str(Path(sys.executable).parent / "ldifs")

pytestmark = pytest.mark.slow


def test_a_sequence_runs_under_ddp_and_rank_zero_writes_the_results(tmp_path):
    out = tmp_path / "run"
    fit_args = [
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--data.init_args.max_train_samples=64",
        "--data.init_args.max_test_samples=64",
        "--data.init_args.batch_size=16",
    ]
    result = subprocess.run(
        [LDIFS, "continual", "--config", "continual/demo", "--tasks", "[digits,fashion]",
         "--epochs", "1", "--out", str(out), "--cache_dir", "null", "--max_train_samples", "40",
         "--max_test_samples", "20", "--fit_args", "[" + ",".join(fit_args) + "]"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr  # two processes trained
    assert result.stdout.count("Continual run digits -> fashion") == 1  # rank zero prints
    results = json.loads((out / "results.json").read_text())
    assert len(results["matrix"]) == 2 and len(results["matrix"][0]) == 2
    for stage in ["stage-0-digits", "stage-1-fashion"]:
        for name in ["encoder.pt", "head.pt", "result.json", "checkpoints/last.ckpt"]:
            assert (out / stage / name).is_file(), f"{stage}/{name}"
    assert not list(out.rglob("*.tmp"))  # no half-written file
