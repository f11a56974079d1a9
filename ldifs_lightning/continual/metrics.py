"""Continual-learning metrics of an accuracy matrix (pure Python, no torch or NumPy).

``R[i][j]`` is the test accuracy (%) on task ``j`` after stage ``i`` of a sequence of ``T`` tasks
(stage ``i`` fine-tunes on task ``i``). Cells with ``j > i`` are tasks not learned yet, measured
zero-shot with the pre-trained text tower: the "transfer" part of the matrix.

Example:
    >>> R = [[80.0, 40.0], [70.0, 90.0]]
    >>> last_accuracy(R), average_accuracy(R), backward_transfer(R), transfer(R)
    (80.0, 80.0, -10.0, 40.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Matrix = Sequence[Sequence[float]]

__all__ = [
    "average_accuracy",
    "backward_transfer",
    "check_matrix",
    "continual_metrics",
    "forgetting_per_task",
    "last_accuracy",
    "mean_forgetting",
    "transfer",
]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def check_matrix(R: Matrix) -> list[list[float]]:
    """``R`` as a list of float rows, after checking it is a square accuracy matrix.

    Args:
        R: ``T`` rows (stages) of ``T`` accuracies (tasks), ``T >= 2``, every one a finite number.

    Returns:
        The same numbers as ``list[list[float]]``.

    Raises:
        ValueError: ``R`` is not square, has fewer than 2 tasks, or holds a non-finite or
            non-numeric entry.

    Example:
        >>> check_matrix([[80, 40], [70, 90]])
        [[80.0, 40.0], [70.0, 90.0]]
        >>> check_matrix([[80.0]])
        Traceback (most recent call last):
        ...
        ValueError: the accuracy matrix needs at least 2 tasks, got 1
    """
    rows = [list(row) for row in R]
    if any(len(row) != len(rows) for row in rows):
        raise ValueError(
            "the accuracy matrix must be square (one row per stage, one column per task), "
            f"got {len(rows)} rows of lengths {[len(row) for row in rows]}"
        )
    if len(rows) < 2:
        raise ValueError(f"the accuracy matrix needs at least 2 tasks, got {len(rows)}")
    checked = []
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"R[{i}][{j}] = {value!r} is not a number (accuracy in %)")
            if not math.isfinite(value):
                raise ValueError(f"R[{i}][{j}] = {value!r}; accuracies must be finite numbers")
        checked.append([float(value) for value in row])
    return checked


def last_accuracy(R: Matrix) -> float:
    """Mean accuracy over all tasks after the last stage (the last row's mean).

    Example:
        >>> last_accuracy([[80.0, 40.0], [70.0, 90.0]])
        80.0
    """
    return _mean(check_matrix(R)[-1])


def average_accuracy(R: Matrix) -> float:
    """Average incremental accuracy: the mean over stages ``i`` of the mean of ``R[i][0..i]``.

    Only tasks seen by stage ``i`` count (the continual-learning definition). ZSCL's "Avg" in the
    MTIL benchmark averages the whole matrix instead, zero-shot cells included; this is not that.

    Example:
        >>> average_accuracy([[80.0, 40.0], [70.0, 90.0]])  # (80 + (70 + 90) / 2) / 2
        80.0
    """
    rows = check_matrix(R)
    return _mean([_mean(row[: i + 1]) for i, row in enumerate(rows)])


def forgetting_per_task(R: Matrix) -> list[float]:
    """Per task ``j < T-1``: its best accuracy before the last stage minus its last accuracy.

    ``max(R[i][j] for i in [j, T-2]) - R[T-1][j]``; positive means forgotten. The last task is
    learned at the last stage and has no forgetting, so the list has ``T-1`` entries.

    Example:
        >>> forgetting_per_task([[80.0, 40.0, 30.0], [75.0, 90.0, 35.0], [60.0, 85.0, 70.0]])
        [20.0, 5.0]
    """
    rows = check_matrix(R)
    last = len(rows) - 1
    return [max(rows[i][j] for i in range(j, last)) - rows[last][j] for j in range(last)]


def mean_forgetting(R: Matrix) -> float:
    """Mean of :func:`forgetting_per_task` over the first ``T-1`` tasks.

    Example:
        >>> mean_forgetting([[80.0, 40.0, 30.0], [75.0, 90.0, 35.0], [60.0, 85.0, 70.0]])
        12.5
    """
    return _mean(forgetting_per_task(R))


def backward_transfer(R: Matrix) -> float:
    """BWT (Lopez-Paz & Ranzato, 2017): mean over ``j < T-1`` of ``R[T-1][j] - R[j][j]``.

    Negative means later stages lowered earlier tasks' accuracy.

    Example:
        >>> backward_transfer([[80.0, 40.0], [70.0, 90.0]])
        -10.0
    """
    rows = check_matrix(R)
    last = len(rows) - 1
    return _mean([rows[last][j] - rows[j][j] for j in range(last)])


def transfer(R: Matrix) -> float:
    """Zero-shot accuracy on tasks before they are learned: mean over ``j >= 1`` of the mean of
    ``R[i][j]`` over ``i < j``.

    ZSCL's "Transfer": the upper triangle of the matrix, averaged per task first.

    Example:
        >>> transfer([[80.0, 40.0, 30.0], [75.0, 90.0, 35.0], [60.0, 85.0, 70.0]])  # (40 + 32.5)/2
        36.25
    """
    rows = check_matrix(R)
    return _mean([_mean([rows[i][j] for i in range(j)]) for j in range(1, len(rows))])


def _foreign_deltas(foreign: Sequence[Mapping[str, Any] | None], key: str) -> list[float | None]:
    values: list[float | None] = []
    for stage, entry in enumerate(foreign):
        if entry is not None and not isinstance(entry, Mapping):
            raise ValueError(
                f"foreign[{stage}] = {entry!r} must be a dict of the suite's metrics or None"
            )
        value = None if entry is None else entry.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"foreign[{stage}][{key!r}] = {value!r} is not a finite number")
        values.append(None if value is None else float(value))
    return values


def continual_metrics(
    R: Matrix, foreign: Sequence[Mapping[str, Any] | None] | None = None
) -> dict[str, Any]:
    """Every metric of ``R`` in one dict, plus the foreign suite's mean deltas per stage.

    Args:
        R: The accuracy matrix (``T x T``, in %).
        foreign: Optional, one entry per stage: the foreign suite's flat metrics after that stage
            (``mean_delta_lp`` / ``mean_delta_zs`` in points; a missing key, a None value or a
            None entry means not measured).

    Returns:
        ``last``, ``avg``, ``forgetting`` (list of ``T-1``), ``mean_forgetting``, ``bwt``,
        ``transfer``; with ``foreign`` also ``foreign_delta_lp`` / ``foreign_delta_zs`` (lists
        per stage, None where not measured) and ``final_delta_lp`` / ``final_delta_zs`` (the
        last stage's).

    Raises:
        ValueError: A bad matrix (see :func:`check_matrix`), ``foreign`` not one entry per
            stage, or a foreign delta that is not a finite number.

    Example:
        >>> R = [[80.0, 40.0], [70.0, 90.0]]
        >>> foreign = [{"mean_delta_lp": -1.0, "mean_delta_zs": None}, {"mean_delta_lp": -3.0}]
        >>> metrics = continual_metrics(R, foreign)
        >>> metrics["last"], metrics["forgetting"], metrics["final_delta_lp"]
        (80.0, [10.0], -3.0)
        >>> metrics["foreign_delta_zs"], metrics["final_delta_zs"]
        ([None, None], None)
    """
    rows = check_matrix(R)
    metrics: dict[str, Any] = {
        "last": last_accuracy(rows),
        "avg": average_accuracy(rows),
        "forgetting": forgetting_per_task(rows),
        "mean_forgetting": mean_forgetting(rows),
        "bwt": backward_transfer(rows),
        "transfer": transfer(rows),
    }
    if foreign is not None:
        if len(foreign) != len(rows):
            raise ValueError(
                f"foreign must hold one entry per stage ({len(rows)}), got {len(foreign)}"
            )
        for short in ("lp", "zs"):
            deltas = _foreign_deltas(foreign, f"mean_delta_{short}")
            metrics[f"foreign_delta_{short}"] = deltas
            metrics[f"final_delta_{short}"] = deltas[-1]
    return metrics
