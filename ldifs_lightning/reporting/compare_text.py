"""README text of the embedded method comparison, from ``docs/results/compare.json``.

The JSON is the ``results.json`` of ``ldifs compare`` (:mod:`ldifs_lightning.compare`).
"""

from __future__ import annotations

from typing import Any

from ldifs_lightning.compare.grid import METHODS
from ldifs_lightning.compare.report import markdown_table


def setting(results: dict[str, Any]) -> str:
    """One paragraph: the grid, the seeds, the budget and the machine."""
    setting_ = results["setting"]
    knobs = "; ".join(
        f"{METHODS[name].label} {knob['knob']} in {', '.join(f'{v:g}' for v in knob['values'])}"
        for name, knob in setting_["knobs"].items()
    )
    minutes = setting_["seconds"] / 60
    return (
        f"{len(setting_['methods'])} methods on {len(setting_['tasks'])} tasks "
        f"({', '.join(setting_['tasks'])}; each time the other three domains are the forgetting "
        f"suite) with {setting_['seeds']} seeds; knobs: {knobs}. The whole grid took "
        f"{minutes:.0f} minutes with {setting_['workers']} worker processes of "
        f"{setting_['threads']} torch thread on {setting_['cpus']} CPU cores (torch "
        f"{setting_['torch']})."
    )


def comparison_table(results: dict[str, Any]) -> str:
    """The table of ``ldifs compare`` (selected settings and matched-accuracy deltas)."""
    return markdown_table(results)


def findings(results: dict[str, Any]) -> str:
    """Who forgets least at the validation-selected settings and at matched accuracy, and where
    LDIFS stands in each ranking."""
    summary = results["summary"]
    selected = summary["selected"]
    trained = {m: s for m, s in selected.items() if m not in ("zs", "lp")}
    by_accuracy = sorted(selected, key=lambda m: -selected[m]["task_acc"][0])
    lines = [
        "- Task accuracy at each method's validation-selected setting, highest first: "
        + ", ".join(f"{METHODS[m].label} {selected[m]['task_acc'][0]:.1f}" for m in by_accuracy)
        + "."
    ]
    for measure, name in [("mean_delta_lp", "delta LP"), ("mean_delta_zs", "delta ZS")]:
        ranked = sorted(trained, key=lambda m: -trained[m][measure][0])
        lines.append(
            f"- At the same settings, mean {name}, least forgetting first: "
            + ", ".join(f"{METHODS[m].label} {trained[m][measure][0]:+.1f}" for m in ranked)
            + " (ZS and LP leave the encoder unchanged: 0)."
        )
    target = summary["matched_accuracy"]
    matched = summary["matched"]
    if target is not None:
        for measure, name in [("mean_delta_lp", "delta LP"), ("mean_delta_zs", "delta ZS")]:
            known = {m: v[measure] for m, v in matched.items() if v[measure] is not None}
            ranked = sorted(known, key=lambda m: -known[m])
            lines.append(
                f"- At matched task accuracy {target:.1f}, mean {name}, least forgetting first: "
                + ", ".join(f"{METHODS[m].label} {known[m]:+.1f}" for m in ranked)
                + "."
            )
    return "\n".join(lines)
