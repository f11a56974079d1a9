"""Results as plain-text tables for the console: forgetting, WiSE-FT, the demo's comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal


def _cell(value: float | None) -> str:
    return f"{value:8.2f}" if value is not None else f"{'-':>8}"


def format_forgetting_table(
    flat: Mapping[str, float], baseline: Mapping[str, Mapping[str, float]]
) -> str:
    """Per dataset the pre-trained and current accuracy and the delta, then the suite means.

    When calibration was measured (``lp_ece`` / ``zs_ece`` keys), a second block shows the
    expected calibration errors the same way (a positive delta: calibration got worse).

    Args:
        flat: ``forgetting_deltas`` of the latest evaluation.
        baseline: Pre-trained accuracies (and calibration errors) per dataset.

    Example:
        >>> print(format_forgetting_table({"a/lp_acc": 70.0, "a/delta_lp": -10.0,
        ...                                "mean_delta_lp": -10.0}, {"a": {"lp_acc": 80.0}}))
        ... # doctest: +NORMALIZE_WHITESPACE
        dataset           LP pre  LP now     dLP  ZS pre  ZS now     dZS
        a                  80.00   70.00  -10.00       -       -       -
        mean                              -10.00                       -
        >>> flat = {"a/lp_acc": 70.0, "a/lp_ece": 6.0, "a/delta_lp_ece": 3.5}
        >>> print(format_forgetting_table(flat, {"a": {"lp_acc": 80.0, "lp_ece": 2.5}}))
        ... # doctest: +NORMALIZE_WHITESPACE
        dataset           LP pre  LP now     dLP  ZS pre  ZS now     dZS
        a                  80.00   70.00       -       -       -       -
        mean                                   -                       -
        ECE               LP pre  LP now    dECE  ZS pre  ZS now    dECE
        a                   2.50    6.00    3.50       -       -       -
        mean                                   -                       -
    """
    lines = _block(flat, baseline, "accuracy")
    if any(key.endswith("_ece") for key in flat):
        lines += _block(flat, baseline, "ece")
    return "\n".join(lines)


def _block(
    flat: Mapping[str, float],
    baseline: Mapping[str, Mapping[str, float]],
    measure: Literal["accuracy", "ece"],
) -> list[str]:
    """Lines of one table: per dataset pre / now / delta for LP and ZS, then the mean deltas."""
    # (measured key, delta key, delta column title) for LP and ZS
    columns = [
        (f"{short}_acc", short, f"d{short.upper()}")
        if measure == "accuracy"
        else (f"{short}_ece", f"{short}_ece", "dECE")
        for short in ("lp", "zs")
    ]
    header = [f"{'dataset' if measure == 'accuracy' else 'ECE':<16}"]
    for (_, _, title), name in zip(columns, ("LP", "ZS"), strict=True):
        header += [f"{name + ' pre':>8}", f"{name + ' now':>8}", f"{title:>8}"]
    lines = ["".join(header)]
    for dataset in sorted(baseline):
        parts = [f"{dataset:<16}"]
        for key, delta, _ in columns:
            parts += [
                _cell(baseline[dataset].get(key)),
                _cell(flat.get(f"{dataset}/{key}")),
                _cell(flat.get(f"{dataset}/delta_{delta}")),
            ]
        lines.append("".join(parts))
    means = [f"{'mean':<16}", " " * 16, _cell(flat.get(f"mean_delta_{columns[0][1]}")), " " * 16]
    means.append(_cell(flat.get(f"mean_delta_{columns[1][1]}")))
    lines.append("".join(means))
    return lines


def format_wiseft_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (method, alpha): task accuracy and the suite's mean deltas.

    Example:
        >>> print(format_wiseft_table([{"method": "ft", "alpha": 0.5, "task_acc": 90.0}]))
        method                        alpha    task     dLP     dZS
        ft                             0.50   90.00       -       -
    """
    lines = [f"{'method':<28}{'alpha':>7}{'task':>8}{'dLP':>8}{'dZS':>8}"]
    for row in rows:
        cells = [f"{row['method']!s:<28}", f"{float(row['alpha']):7.2f}"]
        for key in ("task_acc", "mean_delta_lp", "mean_delta_zs"):
            value = row.get(key)
            cells.append(f"{float(value):8.2f}" if value is not None else f"{'-':>8}")
        lines.append("".join(cells))
    return "\n".join(lines)


def format_comparison(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The demo's comparison: task accuracy, mean and per-domain deltas (points), per method.

    Args:
        summary: Per method, a row of the demo's ``summary.json`` (``label``, ``task_acc``,
            ``mean_delta_lp``, ``mean_delta_zs``, ``domains``).

    Example:
        >>> row = {"label": "FT", "task_acc": 76.6, "mean_delta_lp": -8.2, "mean_delta_zs": -20.9,
        ...        "domains": {"shapes": {"delta_lp": -10.9, "delta_zs": -28.5}}}
        >>> print(format_comparison({"ft": row}))
        method  task acc  mean dLP  mean dZS  shapes dLP/dZS
        ------  --------  --------  --------  --------------
            FT      76.6      -8.2     -20.9   -10.9 / -28.5
    """
    domains = list(next(iter(summary.values()))["domains"])
    header = ["method", "task acc", "mean dLP", "mean dZS"]
    header += [f"{d} dLP/dZS" for d in domains]
    lines = [header]
    for row in summary.values():
        cells = [
            row["label"],
            f"{row['task_acc']:.1f}",
            f"{row['mean_delta_lp']:+.1f}",
            f"{row['mean_delta_zs']:+.1f}",
        ]
        cells += [
            f"{row['domains'][d]['delta_lp']:+.1f} / {row['domains'][d]['delta_zs']:+.1f}"
            for d in domains
        ]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)
