"""The comparison's numbers from its runs: means over seeds, frontiers, selected and matched rows.

Plain functions on the run rows ``ldifs compare`` records (dicts with ``task``, ``seed``,
``method``, ``value``, ``task_acc``, ``val_acc`` and the mean deltas); no torch.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]
#: What is averaged and reported (points).
MEASURES = (
    "task_acc",
    "val_acc",
    "mean_delta_lp",
    "mean_delta_zs",
    "mean_delta_lp_ece",
    "mean_delta_zs_ece",
)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value).

    Example:
        >>> mean_std([1.0, 3.0])
        (2.0, 1.4142135623730951)
    """
    if not values:
        raise ValueError("mean_std of no values")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def settings(rows: Sequence[Row]) -> dict[str, list[float | None]]:
    """Per method, its knob values in increasing order (``[None]`` without a knob)."""
    found: dict[str, set[float | None]] = {}
    for row in rows:
        found.setdefault(row["method"], set()).add(row["value"])
    return {
        method: sorted(values, key=lambda v: -1.0 if v is None else v)
        for method, values in found.items()
    }


def point(rows: Sequence[Row], method: str, value: float | None, task: str | None = None) -> dict:
    """A method setting's measures as ``{measure: (mean, std)}`` over seeds.

    For one ``task`` the seeds' values; over all tasks (``task=None``) each seed's mean over the
    tasks first, then mean and std over seeds.

    Example:
        >>> rows = [{"method": "ft", "value": 1.0, "task": t, "seed": s, "task_acc": a,
        ...          "val_acc": a, "mean_delta_lp": -a / 10, "mean_delta_zs": 0.0}
        ...         for t, s, a in [("x", 0, 80.0), ("y", 0, 60.0), ("x", 1, 90.0), ("y", 1, 70.0)]]
        >>> point(rows, "ft", 1.0)["task_acc"]
        (75.0, 7.0710678118654755)
    """
    chosen = [
        r for r in rows
        if r["method"] == method and r["value"] == value and (task is None or r["task"] == task)
    ]  # fmt: skip
    if not chosen:
        raise ValueError(f"no run of {method} at {value} on {task or 'any task'}")
    by_seed: dict[int, list[Row]] = {}
    for row in chosen:
        by_seed.setdefault(int(row["seed"]), []).append(row)
    return {
        measure: mean_std(
            [statistics.fmean(float(r[measure]) for r in group) for group in by_seed.values()]
        )
        for measure in MEASURES
        if all(measure in r for r in chosen)
    }


def frontier(rows: Sequence[Row], method: str, task: str | None = None) -> list[dict[str, Any]]:
    """The method's points, one per knob value (increasing), each with its means and stds."""
    return [
        {"value": value, **point(rows, method, value, task)}
        for value in settings(rows)[method]
        if any(r["method"] == method and r["value"] == value for r in rows)
    ]


def select_by_validation(points: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The point with the best mean validation accuracy (the first on a tie).

    Example:
        >>> select_by_validation([{"value": 1, "val_acc": (80.0, 1.0)},
        ...                       {"value": 2, "val_acc": (85.0, 0.5)}])["value"]
        2
    """
    if not points:
        raise ValueError("no point to select from")
    return max(points, key=lambda p: p["val_acc"][0])


def at_accuracy(points: Sequence[Mapping[str, Any]], measure: str, accuracy: float) -> float | None:
    """``measure`` (mean) at task accuracy ``accuracy`` on the frontier, linearly interpolated
    between the two points around it (sorted by task accuracy); None outside the frontier.

    Example:
        >>> points = [{"task_acc": (70.0, 0), "mean_delta_lp": (-2.0, 0)},
        ...           {"task_acc": (80.0, 0), "mean_delta_lp": (-6.0, 0)}]
        >>> at_accuracy(points, "mean_delta_lp", 75.0)
        -4.0
    """
    ordered = sorted(points, key=lambda p: p["task_acc"][0])
    for low, high in itertools.pairwise(ordered):
        a, b = low["task_acc"][0], high["task_acc"][0]
        if a <= accuracy <= b:
            if b == a:
                return float(low[measure][0])
            share = (accuracy - a) / (b - a)
            return float(low[measure][0] + share * (high[measure][0] - low[measure][0]))
    if len(ordered) == 1 and ordered[0]["task_acc"][0] == accuracy:
        return float(ordered[0][measure][0])
    return None


def matched_accuracy(frontiers: Mapping[str, Sequence[Mapping[str, Any]]]) -> float | None:
    """The task accuracy the methods with a knob are compared at: the lowest of their best
    accuracies, which every one of their frontiers reaches (None without two such methods).

    Example:
        >>> matched_accuracy({"a": [{"task_acc": (70.0, 0)}, {"task_acc": (90.0, 0)}],
        ...                   "b": [{"task_acc": (60.0, 0)}, {"task_acc": (85.0, 0)}]})
        85.0
    """
    tops = [max(p["task_acc"][0] for p in f) for f in frontiers.values() if len(f) > 1]
    return min(tops) if len(tops) >= 2 else None


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Frontiers (averaged over tasks and per task), each method's validation-selected setting
    and, for the methods with a knob, their deltas at the matched task accuracy."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    frontiers = {m: frontier(rows, m) for m in methods}
    knobbed = {m: f for m, f in frontiers.items() if len(f) > 1}
    target = matched_accuracy(knobbed)
    return {
        "frontiers": frontiers,
        "frontiers_per_task": {t: {m: frontier(rows, m, t) for m in methods} for t in tasks},
        "selected": {m: dict(select_by_validation(f)) for m, f in frontiers.items()},
        "matched_accuracy": target,
        "matched": {
            m: {
                measure: (None if target is None else at_accuracy(f, measure, target))
                for measure in ("mean_delta_lp", "mean_delta_zs")
            }
            for m, f in knobbed.items()
        },
    }
