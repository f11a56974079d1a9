"""The comparison's table (Markdown and console) and frontier plots, from ``results.json``."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ldifs_lightning.atomic import atomic_write, atomic_write_text
from ldifs_lightning.compare.grid import METHODS
from ldifs_lightning.reporting import markdown as md


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _mean_std(pair: Any, signed: bool = False) -> str:
    mean, std = pair
    return (f"{mean:+.1f}" if signed else f"{mean:.1f}") + f" ± {std:.1f}"


def _setting(method: str, selected: Mapping[str, Any]) -> str:
    knob = METHODS[method].knob
    return "-" if knob is None else f"{knob} = {_value(selected['value'])}"


def table_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One row per method: its validation-selected setting, task accuracy, mean deltas of
    accuracy and of calibration error (ECE; positive: worse calibrated), each mean ± std over
    seeds of the mean over tasks, and its deltas at the matched task accuracy."""
    summary = results["summary"]
    rows = []
    for method, selected in summary["selected"].items():
        matched = summary["matched"].get(method, {})
        rows.append(
            [
                METHODS[method].label,
                _setting(method, selected),
                _mean_std(selected["task_acc"]),
                _mean_std(selected["mean_delta_lp"], signed=True),
                _mean_std(selected["mean_delta_zs"], signed=True),
                *(
                    _mean_std(selected[k], signed=True) if k in selected else "-"
                    for k in ("mean_delta_lp_ece", "mean_delta_zs_ece")
                ),
                *(
                    "-" if matched.get(k) is None else f"{matched[k]:+.1f}"
                    for k in ("mean_delta_lp", "mean_delta_zs")
                ),
            ]
        )
    return rows


HEADER = ["method", "selected setting", "task acc", "dLP", "dZS", "dECE LP", "dECE ZS",
          "dLP at matched acc", "dZS at matched acc"]  # fmt: skip


def markdown_table(results: Mapping[str, Any]) -> str:
    """:func:`table_rows` as a Markdown table."""
    return md.markdown_table(
        HEADER, table_rows(results), ["left", "left"] + ["right"] * (len(HEADER) - 2)
    )


def console_table(results: Mapping[str, Any]) -> str:
    """:func:`table_rows` as fixed-width text."""
    lines = [HEADER, *table_rows(results)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _draw(figure: Figure, frontiers: Mapping[str, Any], title: str) -> None:
    for column, (measure, name) in enumerate(
        [("mean_delta_lp", "mean delta LP"), ("mean_delta_zs", "mean delta ZS")]
    ):
        axes = figure.add_subplot(1, 2, column + 1)
        for method, points in frontiers.items():
            xs = [p["task_acc"][0] for p in points]
            ys = [p[measure][0] for p in points]
            style = "o-" if len(points) > 1 else "s"
            axes.plot(xs, ys, style, label=METHODS[method].label)
        axes.axhline(0.0, color="grey", linewidth=0.8)
        axes.set_xlabel("task accuracy (%)")
        axes.set_ylabel(f"{name} (points)")
        axes.set_title(f"{title}: {name}")
        if column == 1:
            axes.legend(fontsize=7, loc="best")


def plot_frontiers(path: str | Path, frontiers: Mapping[str, Any], title: str) -> None:
    """Task accuracy against mean delta LP and ZS, one curve per method (its knob values)."""
    figure = Figure(figsize=(11, 4.5))
    _draw(figure, frontiers, title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))


def write_reports(out: Path, results: Mapping[str, Any]) -> None:
    """``table.md``, ``frontier.png`` and one ``frontier-<task>.png`` per task; prints the table."""
    summary = results["summary"]
    atomic_write_text(out / "table.md", markdown_table(results) + "\n")
    plot_frontiers(out / "frontier.png", summary["frontiers"], "mean over tasks")
    for task, frontiers in summary["frontiers_per_task"].items():
        plot_frontiers(out / f"frontier-{task}.png", frontiers, task)
    setting = results["setting"]
    matched = summary["matched_accuracy"]
    print(
        f"\nMethods on the embedded domains ({', '.join(setting['tasks'])} as the task, "
        f"{setting['seeds']} seed(s)); mean ± std over seeds of the mean over tasks, deltas on "
        f"the other domains"
        + (f", matched task accuracy {matched:.1f}" if matched else "")
        + f":\n{console_table(results)}\n\nWritten to {out}/"
    )
