"""The comparison's summary arithmetic, checked against values written out by hand."""

from __future__ import annotations

import math

import pytest

from ldifs_lightning.compare.summary import at_accuracy, matched_accuracy, point, summarize


def _row(method, value, task, seed, acc, val, dlp, dzs):
    return {"method": method, "value": value, "task": task, "seed": seed, "task_acc": acc,
            "val_acc": val, "mean_delta_lp": dlp, "mean_delta_zs": dzs}  # fmt: skip


ROWS = [
    # LDIFS at two lambdas, two tasks, two seeds.
    _row("ldifs", 10.0, "a", 0, 80.0, 79.0, -4.0, -8.0),
    _row("ldifs", 10.0, "b", 0, 70.0, 71.0, -2.0, -6.0),
    _row("ldifs", 10.0, "a", 1, 82.0, 80.0, -5.0, -9.0),
    _row("ldifs", 10.0, "b", 1, 72.0, 73.0, -3.0, -5.0),
    _row("ldifs", 100.0, "a", 0, 76.0, 77.0, -1.0, -2.0),
    _row("ldifs", 100.0, "b", 0, 66.0, 69.0, -1.0, -2.0),
    _row("ldifs", 100.0, "a", 1, 78.0, 78.0, -1.0, -3.0),
    _row("ldifs", 100.0, "b", 1, 68.0, 70.0, -1.0, -1.0),
    # FT at two learning rates, one seed.
    _row("ft", 0.001, "a", 0, 84.0, 83.0, -10.0, -20.0),
    _row("ft", 0.001, "b", 0, 74.0, 75.0, -8.0, -16.0),
    _row("ft", 0.0001, "a", 0, 78.0, 77.0, -3.0, -6.0),
    _row("ft", 0.0001, "b", 0, 68.0, 67.0, -1.0, -2.0),
    # ZS: no knob.
    _row("zs", None, "a", 0, 60.0, 61.0, 0.0, 0.0),
    _row("zs", None, "b", 0, 50.0, 51.0, 0.0, 0.0),
]


def test_a_point_is_the_mean_over_seeds_of_each_seeds_mean_over_tasks():
    measured = point(ROWS, "ldifs", 10.0)
    seed_means = [(80.0 + 70.0) / 2, (82.0 + 72.0) / 2]  # 75, 77
    mean = sum(seed_means) / 2
    std = math.sqrt(sum((m - mean) ** 2 for m in seed_means) / (2 - 1))
    assert measured["task_acc"] == pytest.approx((mean, std))
    on_b = point(ROWS, "ldifs", 10.0, task="b")["mean_delta_lp"]
    assert on_b == pytest.approx((-2.5, math.sqrt(0.5)))  # seeds -2 and -3


def test_interpolation_at_an_accuracy_and_the_matched_accuracy():
    points = [
        {"task_acc": (72.0, 0.0), "mean_delta_lp": (-1.0, 0.0)},
        {"task_acc": (76.0, 0.0), "mean_delta_lp": (-4.5, 0.0)},
    ]
    # Halfway between 72 and 76 is 74: halfway between -1 and -4.5 is -2.75.
    assert at_accuracy(points, "mean_delta_lp", 74.0) == pytest.approx(-2.75)
    assert at_accuracy(points, "mean_delta_lp", 80.0) is None
    frontiers = {"x": points, "y": [{"task_acc": (70.0, 0.0)}, {"task_acc": (75.0, 0.0)}]}
    assert matched_accuracy(frontiers) == 75.0  # min(76, 75)


def test_summary_selects_by_validation_and_compares_at_the_matched_accuracy():
    summary = summarize(ROWS)
    # LDIFS val: lambda 10 -> seeds (75, 76.5) mean 75.75; lambda 100 -> (73, 74) mean 73.5.
    assert summary["selected"]["ldifs"]["value"] == 10.0
    # FT val: lr 1e-3 -> 79; 1e-4 -> 72.
    assert summary["selected"]["ft"]["value"] == 0.001
    assert summary["selected"]["zs"]["value"] is None
    # Best task accuracies: LDIFS max(76, 72) = 76; FT max(79, 73) = 79 -> matched at 76.
    assert summary["matched_accuracy"] == 76.0
    # LDIFS at 76 is its lambda-10 point: delta LP mean over seeds of (-3, -4) = -3.5.
    assert summary["matched"]["ldifs"]["mean_delta_lp"] == pytest.approx(-3.5)
    # FT between (73, -2) and (79, -9): at 76, halfway: -5.5.
    assert summary["matched"]["ft"]["mean_delta_lp"] == pytest.approx(-5.5)
    assert "zs" not in summary["matched"]
    assert set(summary["frontiers_per_task"]) == {"a", "b"}
