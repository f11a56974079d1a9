"""The demo's and the lambda sweep's tables and findings, from ``ldifs demo``'s
``summary.json`` (``{run name: row}``; rows as written by ``ldifs_lightning.demo.run_method``).

Every function is pure: JSON-like dicts in, Markdown out. Findings quote only numbers computed
here from the rows, and say what the numbers show without claims the rows could contradict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ldifs_lightning.reporting.markdown import markdown_table, short_float, signed

Row = Mapping[str, Any]
Summary = Mapping[str, Row]

#: The run every other run is compared with: plain FT at the config's learning rate.
REFERENCE = "ft"
#: The demo's LDIFS run.
LDIFS = "ldifs"


def run_label(row: Row) -> str:
    """``FT (lr 1e-3)`` or ``LDIFS (lr 1e-3, lambda 300)``, from the row's lr and weight."""
    lr = short_float(row["lr"])
    if row["ldifs_weight"]:
        return f"LDIFS (lr {lr}, lambda {short_float(row['ldifs_weight'])})"
    return f"FT (lr {lr})"


def forgetting(delta: float) -> float:
    """Points lost (a gain is no forgetting)."""
    return max(0.0, -delta)


def forgetting_ratio(delta: float, reference: float) -> float | None:
    """This run's forgetting as a fraction of the reference run's, or None when the reference
    forgot nothing."""
    lost = forgetting(reference)
    return forgetting(delta) / lost if lost > 0 else None


def _reference(summary: Summary, what: str) -> Row:
    if REFERENCE not in summary:
        raise ValueError(
            f"the {what} has no {REFERENCE!r} run (plain FT at ft.yaml's learning rate), which "
            f"every other run is compared with; it has {sorted(summary)}"
        )
    return summary[REFERENCE]


def comparison_table(summary: Summary) -> str:
    """Per run: task accuracy, mean and per-domain deltas of LP and ZS accuracy (points)."""
    domains = list(_reference(summary, "demo summary")["domains"])
    header = ["method", "task acc", "mean dLP", "mean dZS", *(f"{d} dLP / dZS" for d in domains)]
    rows = [
        [
            run_label(row),
            f"{row['task_acc']:.1f}",
            signed(row["mean_delta_lp"]),
            signed(row["mean_delta_zs"]),
            *(
                f"{signed(row['domains'][d]['delta_lp'])} / {signed(row['domains'][d]['delta_zs'])}"
                for d in domains
            ),
        ]
        for row in summary.values()
    ]
    return markdown_table(header, rows, ["left"] + ["right"] * (len(header) - 1))


def _one(values: set[Any], what: str) -> str:
    return str(next(iter(values))) if len(values) == 1 else f"{what} {sorted(map(str, values))}"


def run_environment(summary: Summary) -> str:
    """Where the runs ran and how long they took (from the rows' own records)."""
    rows = list(summary.values())
    threads = {row["threads"] for row in rows}
    seconds = sum(row["seconds"] for row in rows)
    return (
        f"Recorded with torch {_one({row['torch'] for row in rows}, 'versions')}, "
        f"{_one(threads, 'thread counts')} torch thread{'s' if threads != {1} else ''} on "
        f"{_one({row['cpus'] for row in rows}, 'CPU counts')} CPUs, seed "
        f"{_one({row['seed'] for row in rows}, 'seeds')}; the {len(rows)} runs took "
        f"{seconds:.0f} s of fit + test on that machine."
    )


def _share(delta: float, reference: float, kind: str) -> str:
    ratio = forgetting_ratio(delta, reference)
    if delta >= 0:
        return f"no {kind} forgetting ({signed(delta)})"
    if ratio is None:
        return f"{kind} {signed(delta)} (FT forgot nothing there)"
    return f"{ratio:.2f} x FT's {kind} forgetting ({signed(delta)})"


def _versus(row: Row, reference: Row) -> str:
    gap = row["task_acc"] - reference["task_acc"]
    if round(gap, 1) == 0:
        side = "the same task accuracy as FT"
    else:
        side = f"a task accuracy {abs(gap):.1f} points {'above' if gap > 0 else 'below'} FT's"
    return (
        f"{_share(row['mean_delta_lp'], reference['mean_delta_lp'], 'LP')} and "
        f"{_share(row['mean_delta_zs'], reference['mean_delta_zs'], 'ZS')}, at {side}"
    )


def demo_findings(summary: Summary, card: Mapping[str, Any]) -> str:
    """The prose under the demo table: the setting, each run against FT, FT's first epoch, and
    the task accuracy's sampling noise.

    Args:
        summary: The demo's ``summary.json``.
        card: The shipped model's ``card.json`` (for the pre-trained zero-shot task accuracy).
    """
    reference = _reference(summary, "demo summary")
    task, images = reference["task"], reference["task_test_images"]
    pretrained = card.get("accuracy", {}).get(task, {}).get("zs_acc")
    level = (
        f"; the pre-trained model's zero-shot accuracy there is {pretrained:.1f}%, from the model "
        "card"
        if pretrained is not None
        else ""
    )
    lines = [
        f"Deltas are in points against the pre-trained model (negative = forgetting), after the "
        f"last epoch; task accuracy is on the `{task}` test split ({images} images{level}).",
        "",
        f"{run_label(reference)} moves the foreign domains' mean linear-probe accuracy by "
        f"{signed(reference['mean_delta_lp'])} points and their mean zero-shot accuracy by "
        f"{signed(reference['mean_delta_zs'])}, at a task accuracy of "
        f"{reference['task_acc']:.1f}%. With the same data, schedule and seed:",
        "",
    ]
    lines += [
        f"- {run_label(row)}: {_versus(row, reference)};"
        for name, row in summary.items()
        if name != REFERENCE
    ]
    lines[-1] = lines[-1][:-1] + "."
    first = reference["history"][0]
    accuracy = reference["task_acc"] / 100
    noise = 100 * math.sqrt(accuracy * (1 - accuracy) / images)
    lines += [
        "",
        f"After the first of its {len(reference['history'])} epochs FT was at "
        f"{signed(first['mean_delta_lp'])} LP / {signed(first['mean_delta_zs'])} ZS "
        "(`comparison.png` draws every epoch). With "
        f"{images} test images, a task accuracy near {reference['task_acc']:.0f}% has a binomial "
        f"standard error of {noise:.1f} points: read task-accuracy differences of that size as "
        "noise, and the forgetting columns as the effect.",
    ]
    return "\n".join(lines)


def sweep_table(sweep: Summary, demo: Summary) -> str:
    """Per sweep run: task accuracy, mean deltas, and forgetting as a fraction of FT's; the row
    with the demo's LDIFS setting is bold."""
    reference = _reference(sweep, "sweep")
    chosen = demo.get(LDIFS)
    rows = []
    for row in sweep.values():
        label = run_label(row)
        if chosen is not None and (row["lr"], row["ldifs_weight"]) == (
            chosen["lr"],
            chosen["ldifs_weight"],
        ):
            label = f"**{label} (demo)**"
        ratios = [
            forgetting_ratio(row[key], reference[key]) for key in ("mean_delta_lp", "mean_delta_zs")
        ]
        rows.append(
            [
                label,
                f"{row['task_acc']:.2f}",
                signed(row["mean_delta_lp"]),
                signed(row["mean_delta_zs"]),
                *("n/a" if r is None else f"{r:.2f}" for r in ratios),
            ]
        )
    header = [
        "run",
        "task acc",
        "mean dLP",
        "mean dZS",
        "LP forgetting / FT's",
        "ZS forgetting / FT's",
    ]
    return markdown_table(header, rows, ["left"] + ["right"] * 5)


def smallest_lambda(sweep: Summary, max_ratio: float, max_task_drop: float) -> float | None:
    """The smallest LDIFS weight (at FT's learning rate) whose LP and ZS forgetting are both at
    most ``max_ratio`` of FT's, at a task accuracy at most ``max_task_drop`` points below FT's."""
    reference = _reference(sweep, "sweep")
    weights = sorted(
        row["ldifs_weight"]
        for row in sweep.values()
        if row["ldifs_weight"]
        and row["lr"] == reference["lr"]
        and reference["task_acc"] - row["task_acc"] <= max_task_drop
        and all(
            (forgetting_ratio(row[key], reference[key]) or 0.0) <= max_ratio
            for key in ("mean_delta_lp", "mean_delta_zs")
        )
    )
    return weights[0] if weights else None


def _dominates(better: Row, worse: Row) -> bool:
    keys = ("task_acc", "mean_delta_lp", "mean_delta_zs")
    return all(better[k] >= worse[k] for k in keys) and any(better[k] > worse[k] for k in keys)


def _repeats(sweep: Summary, demo: Summary) -> str:
    shared = [name for name in sweep if name in demo]
    if not shared:
        return ""
    keys = ("task_acc", "mean_delta_lp", "mean_delta_zs")
    gap = max(abs(sweep[n][k] - demo[n][k]) for n in shared for k in keys)
    names = ", ".join(run_label(sweep[n]) for n in shared)
    if gap < 0.05:
        return f"Its runs {names} repeat the demo's and give the demo table's numbers. "
    return (
        f"Its runs {names} repeat the demo's; their task accuracy and mean deltas differ from "
        f"the demo table's by up to {gap:.1f} points. "
    )


def sweep_findings(sweep: Summary, demo: Summary) -> str:
    """What the sweep table shows: agreement with the demo, the lambdas that pass two retention
    bars, and which lower-learning-rate FT runs an LDIFS run dominates."""
    reference = _reference(sweep, "sweep")
    chosen = demo.get(LDIFS, {}).get("ldifs_weight")

    def picked(ratio: float) -> str:
        weight = smallest_lambda(sweep, ratio, 1.0)
        return "none" if weight is None else f"lambda = {short_float(weight)}"

    text = _repeats(sweep, demo) + (
        "The smallest lambda whose mean LP and ZS forgetting are both at most 15% of FT's, at a "
        f"task accuracy within 1 point of FT's: {picked(0.15)}; at most one third of FT's: "
        f"{picked(1 / 3)}."
    )
    if chosen is not None:
        text += f" The demo (`configs/demo/ldifs.yaml`) uses lambda = {short_float(chosen)}."
    for row in sweep.values():
        if row["ldifs_weight"] or row is reference:
            continue
        winners = [
            short_float(other["ldifs_weight"])
            for other in sweep.values()
            if other["ldifs_weight"] and _dominates(other, row)
        ]
        text += f" {run_label(row)} is " + (
            f"dominated by LDIFS at lambda {', '.join(winners)} (task accuracy at least as high "
            "and no more forgetting on either metric)."
            if winners
            else "dominated by no LDIFS run of the sweep."
        )
    return text


def lambda_scale(sweep: Summary) -> str:
    """How large the smallest lambda's LDIFS term was next to the cross-entropy, from the
    per-batch values its run logged."""
    weights = sorted(row["ldifs_weight"] for row in sweep.values() if row["ldifs_weight"])
    if not weights:
        raise ValueError("the sweep has no LDIFS run (ldifs_weight > 0)")
    row = next(r for r in sweep.values() if r["ldifs_weight"] == weights[0])
    distance, ce = row["train_log"]["train/ldifs"], row["train_log"]["train/ce"]
    return (
        f"In the sweep's lambda = {short_float(weights[0])} run the per-batch LDIFS distance "
        f"(`train/ldifs`) had a median of {distance['median']:.1e} (from {distance['min']:.1e} "
        f"to {distance['max']:.1e}), so the term lambda x distance was about "
        f"{weights[0] * distance['median']:.2g}, next to a median cross-entropy (`train/ce`) of "
        f"{ce['median']:.2f}."
    )
