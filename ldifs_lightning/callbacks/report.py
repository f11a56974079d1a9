"""Forgetting reports: CSV history, plot and a printed table, as small pure functions."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

COLUMNS = (
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
)


def history_rows(
    baseline: Mapping[str, Mapping[str, float]], history: Sequence[Mapping[str, object]]
) -> list[dict[str, object]]:
    """One row per (evaluation, dataset) with accuracies, pre-trained levels and deltas (in %)."""
    rows = []
    for entry in history:
        for name, accuracies in entry["accuracies"].items():  # type: ignore[union-attr]
            row: dict[str, object] = {
                "epoch": entry["epoch"],
                "step": entry["step"],
                "dataset": name,
                "zero_shot_text_tower": entry.get("text_tower") if "zs_acc" in accuracies else None,
            }
            for short in ("lp", "zs"):
                value = accuracies.get(f"{short}_acc")
                before = baseline.get(name, {}).get(f"{short}_acc")
                row[f"{short}_acc"] = value
                row[f"pretrained_{short}_acc"] = before
                both = value is not None and before is not None
                row[f"delta_{short}"] = value - before if both else None
            rows.append(row)
    return rows


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_history_csv(rows: Sequence[Mapping[str, object]], path: Path) -> None:
    """Write the rows as CSV (empty cells for metrics that were not computed), atomically."""

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in COLUMNS})
    atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def plot_history(rows: Sequence[Mapping[str, object]], path: Path) -> None:
    """Accuracy per foreign dataset vs epoch, one panel per metric, pre-trained level dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in ("lp", "zs") if any(r.get(f"{m}_acc") is not None for r in rows)]
    titles = {"lp": "linear probe", "zs": "zero-shot"}
    figure, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4))
    axes = [axes] if len(panels) <= 1 else list(axes)
    datasets = sorted({str(r["dataset"]) for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
        ax.set_title(f"{titles[metric]} accuracy on foreign datasets (dashed: pre-trained)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))
    plt.close(figure)


def format_table(flat: Mapping[str, float], baseline: Mapping[str, Mapping[str, float]]) -> str:
    """A small text table: per dataset pre-trained -> current accuracy and delta, then means."""
    lines = [
        f"{'dataset':<16}{'LP pre':>8}{'LP now':>8}{'dLP':>8}{'ZS pre':>8}{'ZS now':>8}{'dZS':>8}"
    ]

    def cell(value: float | None) -> str:
        return f"{value:8.2f}" if value is not None else f"{'-':>8}"

    for name in sorted(baseline):
        parts = [f"{name:<16}"]
        for short in ("lp", "zs"):
            parts += [
                cell(baseline[name].get(f"{short}_acc")),
                cell(flat.get(f"{name}/{short}_acc")),
                cell(flat.get(f"{name}/delta_{short}")),
            ]
        lines.append("".join(parts))
    means = [f"{'mean':<16}", " " * 16, cell(flat.get("mean_delta_lp")), " " * 16]
    means.append(cell(flat.get("mean_delta_zs")))
    lines.append("".join(means))
    return "\n".join(lines)
