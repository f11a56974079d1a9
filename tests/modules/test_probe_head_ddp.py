"""LP-FT's probe head under 2-process DDP (gloo on CPU) equals the one-process probe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

LDIFS = str(Path(sys.executable).parent / "ldifs")

pytestmark = pytest.mark.slow


def _fit(out: Path, devices: int) -> dict[str, torch.Tensor]:
    args = [
        LDIFS, "fit", "--config", "compare/lpft",
        "--data.init_args.dataset", "shapes",
        "--data.init_args.max_train_samples", "90",  # not a multiple of 2: ranks' shards differ
        "--data.init_args.batch_size", "16",
        "--trainer.max_epochs", "1",
        "--trainer.callbacks", "[]",
        "--trainer.enable_checkpointing", "true",
        "--trainer.default_root_dir", str(out),
        "--trainer.logger", "false",
        "--trainer.devices", str(devices),
    ]  # fmt: skip
    if devices > 1:
        args += ["--trainer.strategy", "ddp"]
    result = subprocess.run(
        args, capture_output=True, text=True, cwd=out.parent, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = out.rglob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k: state[k] for k in ("initial_head_weight", "initial_head_bias")}


def test_the_probe_head_is_the_same_fitted_on_one_or_two_processes(tmp_path):
    alone = _fit(tmp_path / "one", devices=1)
    shared = _fit(tmp_path / "two", devices=2)
    # The probe is fitted on every rank from all-gathered eval-transform features of the whole
    # fit split, in dataset order: the same features and the same deterministic solver.
    for key, value in alone.items():
        torch.testing.assert_close(shared[key], value, rtol=1e-5, atol=1e-6)
    assert alone["initial_head_weight"].abs().sum() > 0
