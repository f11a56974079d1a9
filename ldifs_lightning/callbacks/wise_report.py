"""WiSE-FT reports: accuracy-vs-forgetting table, CSV and scatter plot."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from ldifs_lightning.callbacks.report import atomic_write

WISEFT_COLUMNS = ("method", "alpha", "task_acc", "mean_delta_lp", "mean_delta_zs")


def write_wiseft_csv(rows: Sequence[Mapping[str, object]], path: Path) -> None:
    """One row per (method, alpha), atomically written."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=WISEFT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in WISEFT_COLUMNS})
    atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def read_wiseft_csv(path: Path) -> list[dict[str, object]]:
    """Rows of a ``wiseft.csv``, numbers as floats (to combine several runs in one plot)."""
    with open(path) as handle:
        return [
            {k: (v if k == "method" else float(v) if v else None) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def plot_wiseft(rows: Sequence[Mapping[str, object]], path: Path) -> None:
    """Scatter of task accuracy vs mean delta LP, one point per alpha, one series per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4.5))
    for method in sorted({str(r["method"]) for r in rows}):
        mine = [r for r in rows if r["method"] == method and r.get("mean_delta_lp") is not None]
        if not mine:
            mine = [r for r in rows if r["method"] == method]
            xs = [0.0] * len(mine)  # no forgetting suite: place points on the axis
        else:
            xs = [float(r["mean_delta_lp"]) for r in mine]
        ys = [float(r["task_acc"]) for r in mine]
        ax.plot(xs, ys, "o-", label=method)
        for x, y, r in zip(xs, ys, mine, strict=True):
            ax.annotate(f"{float(r['alpha']):g}", (x, y), fontsize="x-small")
    ax.set_xlabel("mean delta LP on foreign datasets (points)")
    ax.set_ylabel("task accuracy (%)")
    ax.set_title("WiSE-FT: accuracy vs forgetting (labels: alpha)")
    ax.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))
    plt.close(figure)


def format_wiseft_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A small text table of the rows."""
    lines = [f"{'method':<28}{'alpha':>7}{'task':>8}{'dLP':>8}{'dZS':>8}"]
    for row in rows:
        cells = [f"{row['method']!s:<28}", f"{float(row['alpha']):7.2f}"]
        for key in ("task_acc", "mean_delta_lp", "mean_delta_zs"):
            value = row.get(key)
            cells.append(f"{float(value):8.2f}" if value is not None else f"{'-':>8}")
        lines.append("".join(cells))
    return "\n".join(lines)
