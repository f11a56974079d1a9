"""benchmarks/linear_probe_solver.py: quick report shape and consistency, bad arguments."""

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "linear_probe_solver", REPO / "benchmarks" / "linear_probe_solver.py"
)
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_quick_run_writes_a_consistent_report(tmp_path: Path) -> None:
    out = tmp_path / "solver.json"
    returned = bench.main(["--quick", "--rounds", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["settings"]["suite"] == ["shapes"] and report["environment"]["torch_threads"] == 1

    (evaluation,) = report["evaluation"]
    assert evaluation["train_test_sizes"] == {"shapes": [300, 200]}
    times, probe_times = evaluation["evaluation_s"], evaluation["probe_s"]
    assert set(times) == {"custom", "torch_lbfgs"}
    for solver in times:
        assert len(times[solver]) == len(probe_times[solver]) == 3
        # The probe is one part of the evaluation (features and zero-shot are the rest).
        assert all(0 < p < t for p, t in zip(probe_times[solver], times[solver], strict=True))
    ratios = [a / b for a, b in zip(times["custom"], times["torch_lbfgs"], strict=True)]
    assert evaluation["time_ratio_custom_over_torch"] == pytest.approx(ratios)
    assert evaluation["time_ratio_custom_over_torch_median"] == pytest.approx(
        statistics.median(ratios)
    )
    rest = [t - p for t, p in zip(times["custom"], probe_times["custom"], strict=True)]
    assert evaluation["rest_s_median"]["custom"] == pytest.approx(statistics.median(rest))
    savings = [
        (pt - pc) / t
        for pc, pt, t in zip(
            probe_times["custom"], probe_times["torch_lbfgs"], times["torch_lbfgs"], strict=True
        )
    ]
    assert evaluation["probe_saving_share_median"] == pytest.approx(statistics.median(savings))
    accuracies = evaluation["lp_acc"]
    assert 0 < accuracies["custom"]["shapes"] <= 100
    assert evaluation["lp_acc_max_abs_diff_points"] == pytest.approx(
        abs(accuracies["custom"]["shapes"] - accuracies["torch_lbfgs"]["shapes"])
    )

    probe = report["probe"]
    assert set(probe["outcome"]) == set(bench.PROBE_SIDES)
    for side, seconds in probe["seconds"].items():
        assert len(seconds) == 1 and seconds[0] > 0
        assert probe["seconds_median"][side] == seconds[0]
    ratio = probe["time_ratio_median"]["custom/torch_lbfgs float32"]
    assert ratio == pytest.approx(
        probe["seconds"]["custom/float32"][0] / probe["seconds"]["torch_lbfgs/float32"][0]
    )
    # Same protocol on an easy problem: every side picks the same l2 and nearly the same optimum.
    outcomes = probe["outcome"].values()
    assert len({o["l2"] for o in outcomes}) == 1
    objectives = [o["objective"] for o in outcomes]
    assert max(objectives) - min(objectives) < 1e-4
    assert max(o["test_acc"] for o in outcomes) - min(o["test_acc"] for o in outcomes) <= 0.005


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "argument --rounds: '0' is not a positive whole number"),
        (["--threads", "two"], "argument --threads: 'two' is not a positive whole number"),
        (["--suite", "shapes", "nosuch"], "--suite: unknown dataset 'nosuch'; allowed: "),
    ],
)
def test_bad_arguments_stop_with_one_line(argv, message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("linear_probe_solver.py: error: ") and message in error
