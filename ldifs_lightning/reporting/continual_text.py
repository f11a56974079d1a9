"""README text of the embedded continual comparison, from ``docs/results/continual.json``.

The JSON is what :func:`ldifs_lightning.continual.comparison.run_comparison` writes
(``comparison.json``): per method label its matrix, metrics and stages.
"""

from __future__ import annotations

from typing import Any

from ldifs_lightning.continual.report import markdown_table

#: (metric key, what it means in a sentence, higher is better?)
_RANKED = (
    ("last", "Last (final accuracy over all tasks)", True),
    ("avg", "Avg (accuracy on the tasks seen so far, averaged over stages)", True),
    ("mean_forgetting", "mean forgetting of the earlier tasks", False),
    ("final_delta_lp", "the foreign domain's delta LP after the last stage", True),
    ("final_delta_zs", "the foreign domain's delta ZS after the last stage", True),
)


def setting(summary: dict[str, Any]) -> str:
    """One paragraph: the sequence, the suite, the budget and the machine."""
    runs = summary["runs"]
    seconds = [run["seconds"] for run in runs.values()]
    return (
        f"Sequence {' -> '.join(summary['tasks'])}, {summary['epochs']} epochs per stage, "
        f"foreign suite {', '.join(summary['suite'])}, seed 0, the shipped tiny CLIP; "
        f"{len(runs)} runs of `configs/continual/demo.yaml`, each {min(seconds):.0f}-"
        f"{max(seconds):.0f} s on {summary['cpus']} CPU cores with {summary['threads']} torch "
        f"thread (torch {summary['torch']})."
    )


def comparison_table(summary: dict[str, Any]) -> str:
    """The metrics table, one row per method (accuracies and deltas in points)."""
    return markdown_table({label: run["metrics"] for label, run in summary["runs"].items()})


def matrices(summary: dict[str, Any]) -> str:
    """Every method's accuracy matrix as a small Markdown table (rows: after each stage)."""
    tasks = summary["tasks"]
    blocks = []
    for label, run in summary["runs"].items():
        rows = [
            f"| after {task} | " + " | ".join(f"{value:.1f}" for value in row) + " |"
            for task, row in zip(tasks, run["matrix"], strict=True)
        ]
        header = "| " + label + " | " + " | ".join(tasks) + " |"
        blocks.append("\n".join([header, "| --- |" + " ---: |" * len(tasks), *rows]))
    return "\n\n".join(blocks)


def findings(summary: dict[str, Any]) -> str:
    """Per metric, the best run overall and, when that is not an LDIFS run, the best LDIFS run and
    its rank among all runs."""
    runs = summary["runs"]
    lines = []
    for key, meaning, higher in _RANKED:
        values = {
            label: run["metrics"][key]
            for label, run in runs.items()
            if run["metrics"].get(key) is not None
        }
        if not values:
            continue
        ordered = sorted(values, key=lambda label: values[label], reverse=higher)
        number = "{:+.1f}" if key.startswith("final") else "{:.1f}"
        best = ordered[0]
        shown = number.format(values[best])
        tied = [label for label in ordered[1:] if number.format(values[label]) == shown]
        line = f"- {meaning}: best {best} ({shown}" + (
            f"; tied with {', '.join(tied)})" if tied else ")"
        )
        ldifs = next((label for label in ordered if label.startswith("LDIFS")), None)
        if ldifs is not None and ldifs != best and ldifs not in tied:
            rank = ordered.index(ldifs) + 1
            line += (
                f"; the best LDIFS run, {ldifs}, is {_ordinal(rank)} of {len(ordered)} "
                f"({number.format(values[ldifs])})"
            )
        lines.append(line + ".")
    return "\n".join(lines)


def _ordinal(rank: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(rank, f"{rank}th")
