"""The comparison grid: its runs, and one-line errors for choices outside it."""

from __future__ import annotations

import pytest

from ldifs_lightning.compare.grid import METHODS, TASKS, check_grid


def test_the_full_grid_runs_every_method_at_every_knob_value_on_every_task_and_seed():
    runs = check_grid(list(METHODS), list(TASKS), 3)
    per_cell = sum(len(m.values) if m.knob else 1 for m in METHODS.values())
    assert len(runs) == per_cell * len(TASKS) * 3
    assert {(r.method, r.value) for r in runs if r.method == "ldifs"} == {
        ("ldifs", 30.0),
        ("ldifs", 300.0),
        ("ldifs", 3000.0),
    }
    assert [(r.task, r.seed) for r in runs[:1]] == [("digits", 0)]


def test_quick_keeps_one_value_per_knob_and_given_values_replace_a_grid():
    quick = check_grid(["ft", "ldifs", "lp"], ["textures"], 1, quick=True)
    assert [(r.method, r.value) for r in quick] == [("ft", 1e-3), ("ldifs", 300.0), ("lp", None)]
    given = check_grid(["ldifs"], ["shapes"], 1, values={"ldifs": [10, 100]})
    assert [r.value for r in given] == [10.0, 100.0]


@pytest.mark.parametrize(
    ("methods", "tasks", "seeds", "values", "message"),
    [
        ([], ["shapes"], 1, None, "the comparison grid is empty"),
        (["nope"], ["shapes"], 1, None, "unknown method(s) ['nope']"),
        (["ft"], ["cifar10"], 1, None, "unknown task(s) ['cifar10']"),
        (["ft"], ["shapes"], 0, None, "seeds=0: run at least one seed"),
        (["ls"], ["shapes"], 1, {"ls": [1.0]}, "ls: epsilon=1.0 is outside its range (in [0, 1))"),
        (["wiseft"], ["shapes"], 1, {"wiseft": [1.5]}, "wiseft: alpha=1.5 is outside its range"),
        (["ldifs"], ["shapes"], 1, {"ldifs": [-1]}, "ldifs: lambda=-1.0 is outside its range"),
        (["ft"], ["shapes"], 1, {"ft": [0]}, "ft: lr=0.0 is outside its range (> 0)"),
        (["ft"], ["shapes"], 1, {"ldifs": [10]}, "values given for ['ldifs']"),
        (["ft", "ft"], ["shapes"], 1, None, "listed twice"),
    ],
)
def test_bad_grid_choices_are_one_line_errors(methods, tasks, seeds, values, message):
    with pytest.raises(ValueError) as error:
        check_grid(methods, tasks, seeds, values)
    assert message in str(error.value) and "\n" not in str(error.value)
