"""benchmarks/ldifs_overhead.py: a one-round run's report, bad arguments, the rendered table."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ldifs_lightning.reporting import benchmark_text

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "ldifs_overhead.py"
SPEC = importlib.util.spec_from_file_location("ldifs_overhead", SCRIPT)
ldifs_overhead = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ldifs_overhead)


@pytest.mark.filterwarnings("ignore")
def test_one_round_writes_the_floor_next_to_the_target(tmp_path):
    out = tmp_path / "overhead.json"
    ldifs_overhead.main(
        ["--cases", "tiny-vit-128", "--rounds", "1", "--steps", "1", "--out", str(out)]
    )
    case = json.loads(out.read_text())["cases"]["tiny-vit-128"]
    # Default taps of the tiny ViT at batch 128: ln_pre and 4 blocks, 17 tokens of 64 channels,
    # one float32 gradient each.
    assert case["tap_gradient_bytes"] == 128 * 5 * 17 * 64 * 4
    ft_peak = case["peak"]["ft"]["bytes"]
    assert case["memory_target"] == pytest.approx(1 + case["frozen_weight_bytes"] / ft_peak + 0.03)
    assert case["memory_floor"] == pytest.approx(
        case["memory_target"] + case["tap_gradient_bytes"] / ft_peak
    )
    assert case["memory_ratio"] == case["peak"]["ldifs"]["bytes"] / ft_peak
    assert case["memory_floor_met"] == (case["memory_ratio"] <= case["memory_floor"])
    # LDIFS keeps less than plain autograd through F.normalize does.
    assert case["peak"]["ldifs"]["bytes"] < case["peak"]["ldifs_autograd"]["bytes"]
    assert set(case["extra_seconds"]) >= {"frozen_forward", "distance_forward_backward"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "need --rounds >= 1"),
        (["--cases", "vit-h"], "unknown case(s) ['vit-h']"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_arguments_fail_in_one_line_with_status_2(argv, message, tmp_path):
    out = tmp_path / "never.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not out.exists()


def test_overhead_table_exact():
    case = {
        "model": "tiny",
        "batch": 8,
        "median_seconds": {"ft": 0.040},
        "extra_seconds": {
            "frozen_forward": 0.012,
            "distance_forward_backward": 0.002,
            "distance_forward_backward_autograd": 0.010,
        },
        "time_ratio": 1.4,
        "time_target": 1.45,
        "memory_ratio": 1.12,
        "memory_target": 1.05,
        "memory_floor": 1.14,
        "tap_gradient_bytes": 3 * 2**20,
    }
    report = {
        "torch": "2.14.1",
        "machine": "x86_64",
        "threads": 1,
        "cpus": 2,
        "rounds": 5,
        "cases": {"tiny-8": case},
    }
    text = benchmark_text.ldifs_overhead_benchmark(report)
    assert text.splitlines()[-1] == (
        "| `tiny`, batch 8 | 40 ms | 1.40 (<= 1.45): met | 0.30 | 0.050 (0.250) | "
        "1.120 (<= 1.050): not met | 3.0 | 1.120 (<= 1.140): met |"
    )
    assert "medians over 5 interleaved rounds" in text
