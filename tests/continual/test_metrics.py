"""Continual metrics against values computed by hand on fixed matrices."""

import math

import pytest

from ldifs_lightning.continual.metrics import (
    average_accuracy,
    backward_transfer,
    check_matrix,
    continual_metrics,
    forgetting_per_task,
    last_accuracy,
    mean_forgetting,
    transfer,
)

# R[i][j]: accuracy on task j after stage i. Chosen so that each definition is told apart from
# its near misses: task 0 peaks after stage 1 (not on the diagonal), task 1 improves at the last
# stage (negative forgetting) and its zero-shot cell R[0][1] beats its learned ones (so a max that
# wrongly started at i=0 would show), and the upper triangle's plain mean differs from the
# per-task-first mean.
R = [
    [82.0, 95.0, 12.0],
    [86.0, 91.0, 20.0],
    [60.0, 93.0, 77.0],
]
FUNCTIONS = [
    check_matrix,
    last_accuracy,
    average_accuracy,
    forgetting_per_task,
    mean_forgetting,
    backward_transfer,
    transfer,
    continual_metrics,
]


def test_last_accuracy_is_the_last_rows_mean():
    assert last_accuracy(R) == pytest.approx((60.0 + 93.0 + 77.0) / 3)


def test_average_accuracy_averages_seen_tasks_per_stage():
    expected_avg = (82.0 + (86.0 + 91.0) / 2 + (60.0 + 93.0 + 77.0) / 3) / 3
    assert average_accuracy(R) == pytest.approx(expected_avg)
    whole_matrix_mean = sum(map(sum, R)) / 9
    assert average_accuracy(R) != pytest.approx(whole_matrix_mean)


def test_forgetting_is_best_before_last_stage_minus_last():
    # task 0: max(R00, R10) - R20; task 1: max(R11) - R21; task 2 (the last): none
    assert forgetting_per_task(R) == pytest.approx([86.0 - 60.0, 91.0 - 93.0])
    assert mean_forgetting(R) == pytest.approx(((86.0 - 60.0) + (91.0 - 93.0)) / 2)


def test_forgetting_ignores_the_zero_shot_cells_above_the_diagonal():
    # R[0][1] = 99 is task 1's zero-shot accuracy before it was learned: not a level to forget.
    matrix = [[50.0, 99.0], [40.0, 70.0]]
    assert forgetting_per_task(matrix) == pytest.approx([50.0 - 40.0])


def test_backward_transfer_is_last_minus_just_learned():
    expected_bwt = ((60.0 - 82.0) + (93.0 - 91.0)) / 2
    assert backward_transfer(R) == pytest.approx(expected_bwt)


def test_transfer_averages_the_upper_triangle_per_task_first():
    expected_transfer = (95.0 + (12.0 + 20.0) / 2) / 2
    assert transfer(R) == pytest.approx(expected_transfer)
    plain_mean = (95.0 + 12.0 + 20.0) / 3
    assert transfer(R) != pytest.approx(plain_mean)


def test_two_by_two():
    matrix = [[80.0, 40.0], [70.0, 90.0]]
    assert last_accuracy(matrix) == pytest.approx((70.0 + 90.0) / 2)
    assert average_accuracy(matrix) == pytest.approx((80.0 + (70.0 + 90.0) / 2) / 2)
    assert forgetting_per_task(matrix) == pytest.approx([80.0 - 70.0])
    assert backward_transfer(matrix) == pytest.approx(70.0 - 80.0)
    assert transfer(matrix) == pytest.approx(40.0)


def test_continual_metrics_collects_every_metric():
    metrics = continual_metrics(R)
    assert set(metrics) == {"last", "avg", "forgetting", "mean_forgetting", "bwt", "transfer"}
    assert metrics["last"] == pytest.approx((60.0 + 93.0 + 77.0) / 3)
    assert metrics["avg"] == pytest.approx(
        (82.0 + (86.0 + 91.0) / 2 + (60.0 + 93.0 + 77.0) / 3) / 3
    )
    assert metrics["forgetting"] == pytest.approx([26.0, -2.0])
    assert metrics["mean_forgetting"] == pytest.approx(12.0)
    assert metrics["bwt"] == pytest.approx(-10.0)
    assert metrics["transfer"] == pytest.approx(55.5)


def test_continual_metrics_with_foreign_deltas():
    foreign = [
        {"mean_delta_lp": -1.5, "mean_delta_zs": -4.0, "shapes/lp_acc": 70.0},
        None,  # not measured at this stage
        {"mean_delta_lp": -3.25},  # zero-shot not measured: no key
    ]
    metrics = continual_metrics(R, foreign)
    assert metrics["foreign_delta_lp"] == [-1.5, None, -3.25]
    assert metrics["foreign_delta_zs"] == [-4.0, None, None]
    assert metrics["final_delta_lp"] == -3.25
    assert metrics["final_delta_zs"] is None
    assert metrics["last"] == pytest.approx((60.0 + 93.0 + 77.0) / 3)


def test_check_matrix_converts_ints_to_floats():
    checked = check_matrix([[1, 2], [3, 4]])
    assert checked == [[1.0, 2.0], [3.0, 4.0]]
    assert all(isinstance(value, float) for row in checked for value in row)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "must be square"),
        ([[1.0, 2.0], [3.0]], "must be square"),
        ([[1.0]], "at least 2 tasks"),
        ([], "at least 2 tasks"),
        ([[1.0, math.nan], [3.0, 4.0]], r"R\[0\]\[1\] = nan; accuracies must be finite"),
        ([[1.0, 2.0], [math.inf, 4.0]], r"R\[1\]\[0\] = inf; accuracies must be finite"),
        ([[1.0, 2.0], [3.0, "4"]], r"R\[1\]\[1\] = '4' is not a number"),
        ([[True, 2.0], [3.0, 4.0]], r"R\[0\]\[0\] = True is not a number"),
    ],
)
@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_bad_matrices_raise_one_line_value_errors(function, matrix, message):
    with pytest.raises(ValueError, match=message) as caught:
        function(matrix)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("foreign", "message"),
    [
        ([{"mean_delta_lp": 1.0}] * 2, r"one entry per stage \(3\), got 2"),
        ([None, None, {"mean_delta_zs": math.nan}], r"foreign\[2\]\['mean_delta_zs'\] = nan"),
        ([None, {"mean_delta_lp": "x"}, None], r"foreign\[1\]\['mean_delta_lp'\] = 'x'"),
        ([None, None, [1.0]], r"foreign\[2\] = \[1.0\] must be a dict"),
    ],
)
def test_bad_foreign_raises(foreign, message):
    with pytest.raises(ValueError, match=message):
        continual_metrics(R, foreign)
