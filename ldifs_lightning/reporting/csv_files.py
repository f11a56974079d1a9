"""Results as CSV files: the forgetting history and the WiSE-FT sweep, written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ldifs_lightning.atomic import atomic_write_text

#: Columns of ``forgetting.csv``, one row per (evaluation, dataset).
HISTORY_COLUMNS = (
    "epoch",
    "step",
    "dataset",
    "lp_acc",
    "pretrained_lp_acc",
    "delta_lp",
    "zs_acc",
    "pretrained_zs_acc",
    "delta_zs",
    "zero_shot_text_tower",
    # Expected calibration errors (in %) of the same predictions; appended so that the columns
    # above keep their positions.
    "lp_ece",
    "pretrained_lp_ece",
    "delta_lp_ece",
    "zs_ece",
    "pretrained_zs_ece",
    "delta_zs_ece",
)
#: Columns of ``wiseft.csv``, one row per (method, alpha).
WISEFT_COLUMNS = ("method", "alpha", "task_acc", "mean_delta_lp", "mean_delta_zs")


def history_rows(
    baseline: Mapping[str, Mapping[str, float]], history: Sequence[Mapping[str, Any]]
) -> list[dict[str, object]]:
    """One row per (evaluation, dataset) with accuracies, pre-trained levels and deltas (in %).

    The same for the expected calibration errors (``lp_ece``, ``pretrained_lp_ece``,
    ``delta_lp_ece``, and ``zs_*``) where they were measured; None where not.

    Example:
        >>> entry = {"epoch": 0, "step": 5, "accuracies": {"a": {"lp_acc": 70.0, "lp_ece": 6.0}}}
        >>> row = history_rows({"a": {"lp_acc": 80.0, "lp_ece": 2.5}}, [entry])[0]
        >>> row["delta_lp"], row["delta_lp_ece"], row["zs_ece"]
        (-10.0, 3.5, None)
    """
    rows = []
    for entry in history:
        for name, accuracies in entry["accuracies"].items():
            row: dict[str, object] = {
                "epoch": entry["epoch"],
                "step": entry["step"],
                "dataset": name,
                "zero_shot_text_tower": entry.get("text_tower") if "zs_acc" in accuracies else None,
            }
            for short in ("lp", "zs"):
                # (measured key, its delta's column): accuracy, then calibration error
                for key, delta in ((f"{short}_acc", short), (f"{short}_ece", f"{short}_ece")):
                    value = accuracies.get(key)
                    before = baseline.get(name, {}).get(key)
                    row[key] = value
                    row[f"pretrained_{key}"] = before
                    both = value is not None and before is not None
                    row[f"delta_{delta}"] = value - before if both else None
            rows.append(row)
    return rows


def _write_csv(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str], path: str | Path
) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in columns})
    atomic_write_text(path, text.getvalue())


def write_history_csv(rows: Sequence[Mapping[str, object]], path: str | Path) -> None:
    """Write :func:`history_rows` as ``forgetting.csv`` (empty cells: metrics not computed).

    Example:
        >>> write_history_csv(rows, log_dir / "forgetting.csv")  # doctest: +SKIP
    """
    _write_csv(rows, HISTORY_COLUMNS, path)


def write_wiseft_csv(rows: Sequence[Mapping[str, object]], path: str | Path) -> None:
    """Write WiSE-FT rows (``method``, ``alpha``, ``task_acc``, mean deltas) as ``wiseft.csv``.

    Example:
        >>> row = {"method": "ft", "alpha": 0.5, "task_acc": 90.0}
        >>> write_wiseft_csv([row], log_dir / "wiseft.csv")  # doctest: +SKIP
    """
    _write_csv(rows, WISEFT_COLUMNS, path)


def read_wiseft_csv(path: str | Path) -> list[dict[str, str | float | None]]:
    """Rows of a ``wiseft.csv``, numbers as floats, to draw several runs in one ``plot_wiseft``.

    Example:
        >>> rows = read_wiseft_csv("a/wiseft.csv") + read_wiseft_csv("b.csv")  # doctest: +SKIP
        >>> plot_wiseft(rows, "both.png")  # doctest: +SKIP
    """
    with open(path, newline="") as handle:
        return [
            {k: (v if k == "method" else float(v) if v else None) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]
