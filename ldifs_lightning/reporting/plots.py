"""Results as PNG plots: forgetting per epoch, WiSE-FT accuracy vs forgetting, the demo's curves.

Figures are built with matplotlib's object API (no pyplot): no global backend or figure state
is touched, so plotting works in notebooks and headless runs alike. Files are written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from ldifs_lightning.atomic import atomic_write

_TITLES = {"lp": "linear probe", "zs": "zero-shot"}


def _save(figure: Figure, path: str | Path, dpi: int) -> None:
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=dpi))


def plot_history(rows: Sequence[Mapping[str, object]], path: str | Path) -> None:
    """Accuracy per foreign dataset vs epoch, one panel per metric, pre-trained level dashed.

    Args:
        rows: ``history_rows`` of a forgetting run.
        path: PNG file to write.

    Example:
        >>> rows = history_rows(baseline, history)  # doctest: +SKIP
        >>> plot_history(rows, log_dir / "forgetting.png")  # doctest: +SKIP
    """
    panels = [m for m in ("lp", "zs") if any(r.get(f"{m}_acc") is not None for r in rows)]
    figure = Figure(figsize=(5.5 * max(1, len(panels)), 4))
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    datasets = sorted({str(r["dataset"]) for r in rows})
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes, panels, strict=False):
        for index, name in enumerate(datasets):
            mine = [r for r in rows if r["dataset"] == name and r.get(f"{metric}_acc") is not None]
            if not mine:
                continue
            color = colors[index % len(colors)]
            epochs = [r["epoch"] for r in mine]
            ax.plot(epochs, [r[f"{metric}_acc"] for r in mine], "o-", color=color, label=name)
            before = mine[0].get(f"pretrained_{metric}_acc")
            if before is not None:
                ax.axhline(before, color=color, linestyle="--", linewidth=1)
        ax.set_title(f"{_TITLES[metric]} accuracy on foreign datasets (dashed: pre-trained)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize="small")
    figure.tight_layout()
    _save(figure, path, dpi=100)


def plot_wiseft(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Task accuracy vs mean delta LP, one point per alpha, one series per method.

    Without a forgetting suite (no ``mean_delta_lp``) the points sit on the axis at 0.

    Example:
        >>> row = {"method": "ft", "alpha": 0.5, "task_acc": 90.0}
        >>> plot_wiseft([row], "wiseft.png")  # doctest: +SKIP
    """
    figure = Figure(figsize=(6, 4.5))
    ax = figure.subplots()
    for method in sorted({str(r["method"]) for r in rows}):
        mine = [r for r in rows if r["method"] == method and r.get("mean_delta_lp") is not None]
        if not mine:
            mine = [r for r in rows if r["method"] == method]
            xs = [0.0] * len(mine)
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
    _save(figure, path, dpi=100)


def plot_comparison(summary: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """The demo's curves: mean delta LP and ZS per epoch, one line per method.

    Args:
        summary: Per method, a row of the demo's ``summary.json`` (``label``, ``task_acc``,
            ``history`` of per-epoch ``mean_delta_lp``/``mean_delta_zs``).
        path: PNG file to write.

    Example:
        >>> plot_comparison(summary, "runs/demo/comparison.png")  # doctest: +SKIP
    """
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, key, title in zip(
        axes, ("mean_delta_lp", "mean_delta_zs"), ("LP", "ZS"), strict=True
    ):
        for row in summary.values():
            epochs = [0] + [entry["epoch"] + 1 for entry in row["history"]]
            values = [0.0] + [entry[key] for entry in row["history"]]
            axis.plot(epochs, values, marker="o", label=f"{row['label']} ({row['task_acc']:.1f}%)")
        axis.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        axis.set(xlabel="epoch", ylabel=f"mean delta {title} (points)", title=f"foreign {title}")
    axes[0].legend(title="method (task acc)", fontsize=8)
    _save(figure, path, dpi=120)
