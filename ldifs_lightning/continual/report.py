"""Reports of continual runs: the accuracy matrix and metrics as CSV, plots and tables.

``summaries`` map a run's label (the method) to its :func:`~.metrics.continual_metrics` dict.
Every file is written atomically (``ldifs_lightning.atomic``); figures use matplotlib's object
API, like ``ldifs_lightning.reporting.plots``, so no global backend or figure state is touched.

Example:
    >>> from ldifs_lightning.continual.metrics import continual_metrics
    >>> metrics = continual_metrics([[80.0, 40.0], [70.0, 90.0]])
    >>> print(format_continual_table({"FT": metrics}))
    method  Last   Avg  Forgetting    BWT  Transfer  foreign dLP  foreign dZS
    ------  ----  ----  ----------  -----  --------  -----------  -----------
    FT      80.0  80.0        10.0  -10.0      40.0            -            -
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ldifs_lightning.atomic import atomic_write, atomic_write_text
from ldifs_lightning.continual.metrics import Matrix, check_matrix
from ldifs_lightning.reporting import markdown as md

__all__ = [
    "METRICS_COLUMNS",
    "format_continual_table",
    "markdown_table",
    "plot_foreign_deltas",
    "plot_matrix",
    "write_matrix_csv",
    "write_metrics_csv",
]

Summaries = Mapping[str, Mapping[str, Any]]

#: Columns of a continual ``metrics.csv``, one row per method run.
METRICS_COLUMNS = (
    "label",
    "last",
    "avg",
    "mean_forgetting",
    "bwt",
    "transfer",
    "final_delta_lp",
    "final_delta_zs",
)
#: Metrics every summary must hold (the foreign deltas are optional: no suite, no deltas).
_REQUIRED = ("last", "avg", "mean_forgetting", "bwt", "transfer")
#: (summary key, table column title, signed?) of the console and Markdown tables.
_TABLE_COLUMNS = (
    ("last", "Last", False),
    ("avg", "Avg", False),
    ("mean_forgetting", "Forgetting", False),
    ("bwt", "BWT", True),
    ("transfer", "Transfer", False),
    ("final_delta_lp", "foreign dLP", True),
    ("final_delta_zs", "foreign dZS", True),
)


def _check_tasks(tasks: Sequence[str], size: int) -> list[str]:
    names = list(tasks)
    if len(names) != size or any(not isinstance(name, str) or not name for name in names):
        raise ValueError(
            f"tasks must be {size} non-empty names, one per row/column of the matrix, got {names}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"tasks must be distinct (each task is learned once), got {names}")
    return names


def _check_summaries(summaries: Summaries) -> None:
    if not summaries:
        raise ValueError("summaries is empty: give {label: continual_metrics(...)} per method run")
    for label, metrics in summaries.items():
        missing = [key for key in _REQUIRED if key not in metrics]
        if missing:
            raise ValueError(
                f"summary {label!r} lacks {missing}; give continual_metrics(...) dicts "
                f"(keys {list(_REQUIRED)} and optional final_delta_lp / final_delta_zs)"
            )


def _number(value: Any, signed: bool) -> str:
    if value is None:
        return "-"
    return md.signed(float(value)) if signed else f"{float(value):.1f}"


def _save(figure: Figure, path: str | Path, dpi: int) -> None:
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=dpi))


def write_matrix_csv(path: str | Path, tasks: Sequence[str], R: Matrix) -> None:
    """Write the accuracy matrix as CSV: header ``stage,<task0>,<task1>,...``, then one row per
    stage labelled with the task trained at that stage.

    Args:
        path: CSV file to write (atomically; missing folders are created).
        tasks: The sequence's task names, in stage order.
        R: ``R[i][j]``: accuracy (%) on task ``j`` after stage ``i``.

    Raises:
        ValueError: A bad matrix, or ``tasks`` not one distinct name per row.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "matrix.csv"
        >>> write_matrix_csv(path, ["digits", "fashion"], [[80.0, 40.0], [70.0, 90.0]])
        >>> print(path.read_text(), end="")
        stage,digits,fashion
        digits,80.0,40.0
        fashion,70.0,90.0
    """
    rows = check_matrix(R)
    names = _check_tasks(tasks, len(rows))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["stage", *names])
    for name, row in zip(names, rows, strict=True):
        writer.writerow([name, *row])
    atomic_write_text(path, text.getvalue())


def write_metrics_csv(path: str | Path, summaries: Summaries) -> None:
    """Write one row per method run with the columns of :data:`METRICS_COLUMNS` (an empty cell:
    not measured, e.g. the foreign deltas of a run without a suite).

    Args:
        path: CSV file to write (atomically).
        summaries: Per method label, its :func:`~.metrics.continual_metrics` dict.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> metrics = {"last": 80.0, "avg": 80.0, "mean_forgetting": 10.0, "bwt": -10.0,
        ...            "transfer": 40.0, "final_delta_lp": -3.0}
        >>> write_metrics_csv(path, {"FT": metrics})
        >>> print(path.read_text(), end="")
        label,last,avg,mean_forgetting,bwt,transfer,final_delta_lp,final_delta_zs
        FT,80.0,80.0,10.0,-10.0,40.0,-3.0,
    """
    _check_summaries(summaries)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(METRICS_COLUMNS)
    for label, metrics in summaries.items():
        values = [metrics.get(key) for key in METRICS_COLUMNS[1:]]
        writer.writerow([label, *("" if value is None else value for value in values)])
    atomic_write_text(path, text.getvalue())


def plot_matrix(path: str | Path, tasks: Sequence[str], R: Matrix, title: str) -> None:
    """Heat map of the accuracy matrix, each cell annotated with its accuracy.

    Rows are ``after <task i>``, columns the tasks; the cells above the diagonal (tasks not
    learned yet, measured zero-shot) are hatched, which the title says.

    Args:
        path: PNG file to write (atomically: a failed plot leaves no partial file).
        tasks: The sequence's task names, in stage order.
        R: ``R[i][j]``: accuracy (%) on task ``j`` after stage ``i``.
        title: First line of the title.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "matrix.png"
        >>> plot_matrix(path, ["digits", "fashion"], [[80.0, 40.0], [70.0, 90.0]], "FT")
        >>> path.read_bytes()[:4]
        b'\\x89PNG'
    """
    rows = check_matrix(R)
    names = _check_tasks(tasks, len(rows))
    size = len(rows)
    figure = Figure(figsize=(2.5 + 1.1 * size, 1.8 + 0.8 * size), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(rows, cmap="viridis", vmin=0.0, vmax=100.0)
    figure.colorbar(image, ax=ax, label="accuracy (%)")
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if j > i:
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        fill=False,
                        hatch="//",
                        edgecolor="white",
                        linewidth=0,
                    )
                )
            # viridis is dark below about half its range: white text there, black above
            ax.text(
                j,
                i,
                f"{value:.1f}",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if value < 50.0 else "black",
                bbox={"facecolor": "grey", "alpha": 0.6, "linewidth": 0} if j > i else None,
            )
    ax.set_xticks(range(size), names, rotation=30, ha="right")
    ax.set_yticks(range(size), [f"after {name}" for name in names])
    ax.set_xlabel("accuracy on task")
    ax.set_title(f"{title}\n(hatched: not learned yet, zero-shot)", fontsize="medium")
    _save(figure, path, dpi=120)


def plot_foreign_deltas(
    path: str | Path,
    tasks: Sequence[str],
    foreign_by_method: Mapping[str, Sequence[Mapping[str, Any] | None]],
) -> None:
    """Mean foreign delta LP and ZS (points vs the pre-trained model) after each stage, one line
    per method, one panel per metric; points not measured (None) are gaps.

    Args:
        path: PNG file to write (atomically).
        tasks: The sequence's task names (x axis: after training on each).
        foreign_by_method: Per method label, per stage the foreign suite's flat metrics
            (``mean_delta_lp`` / ``mean_delta_zs``), or None where not measured.

    Raises:
        ValueError: No method, or a method without one entry per task.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "foreign.png"
        >>> stages = [{"mean_delta_lp": -1.0, "mean_delta_zs": -2.0}, {"mean_delta_lp": -4.0}]
        >>> plot_foreign_deltas(path, ["digits", "fashion"], {"FT": stages})
        >>> path.read_bytes()[:4]
        b'\\x89PNG'
    """
    names = list(tasks)
    if not foreign_by_method:
        raise ValueError("foreign_by_method is empty: give {label: [foreign metrics per stage]}")
    for label, stages in foreign_by_method.items():
        if len(stages) != len(names):
            raise ValueError(
                f"method {label!r} has {len(stages)} foreign entries, need one per task "
                f"({len(names)}: {names})"
            )
    many = len(foreign_by_method) > 4  # then one legend beside both panels
    width = 4.0 + 1.2 * len(names) + (2.6 if many else 0.0)
    figure = Figure(figsize=(width, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True)
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(foreign_by_method) > len(colors):
        colors = [mpl.colormaps["tab20"](i % 20) for i in range(len(foreign_by_method))]
    stages_x = list(range(len(names)))
    for ax, short in zip(axes, ("LP", "ZS"), strict=True):
        key = f"mean_delta_{short.lower()}"
        measured = False
        for index, (label, stages) in enumerate(foreign_by_method.items()):
            values = [
                math.nan if entry is None or entry.get(key) is None else float(entry[key])
                for entry in stages
            ]
            if all(math.isnan(value) for value in values):
                continue
            measured = True
            ax.plot(stages_x, values, "o-", color=colors[index % len(colors)], label=label)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        if measured and not many:
            ax.legend(title="method", fontsize="small")
        elif not measured:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(stages_x, names, rotation=30, ha="right")
        ax.set(
            xlabel="after training on",
            ylabel=f"mean delta {short} (points)",
            title=f"foreign {short} (dashed: pre-trained level)",
        )
    if many:
        handles, labels = axes[0].get_legend_handles_labels()
        # "outside right" (constrained layout) is valid but not in matplotlib's typed overloads.
        figure.legend(  # type: ignore[call-overload]
            handles=handles, labels=labels, title="method", fontsize="small", loc="outside right"
        )
    _save(figure, path, dpi=120)


def format_continual_table(summaries: Summaries) -> str:
    """A fixed-width console table, one row per method: Last, Avg, mean forgetting, BWT,
    Transfer and the final foreign deltas, one decimal (``-``: not measured).

    Args:
        summaries: Per method label, its :func:`~.metrics.continual_metrics` dict.

    Example:
        >>> metrics = {"last": 80.0, "avg": 80.26, "mean_forgetting": 10.0, "bwt": -10.0,
        ...            "transfer": 40.0, "final_delta_lp": -3.04, "final_delta_zs": None}
        >>> print(format_continual_table({"LDIFS": metrics}))
        method  Last   Avg  Forgetting    BWT  Transfer  foreign dLP  foreign dZS
        ------  ----  ----  ----------  -----  --------  -----------  -----------
        LDIFS   80.0  80.3        10.0  -10.0      40.0         -3.0            -
    """
    _check_summaries(summaries)
    lines = [["method", *(title for _, title, _ in _TABLE_COLUMNS)]]
    for label, metrics in summaries.items():
        lines.append(
            [label, *(_number(metrics.get(key), signed) for key, _, signed in _TABLE_COLUMNS)]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def join(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    text = [join(line) for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def markdown_table(summaries: Summaries) -> str:
    """:func:`format_continual_table` as a Markdown table (for the README's generated regions).

    Example:
        >>> metrics = {"last": 80.0, "avg": 80.26, "mean_forgetting": 10.0, "bwt": -10.0,
        ...            "transfer": 40.0, "final_delta_lp": -3.04, "final_delta_zs": None}
        >>> print(markdown_table({"LDIFS": metrics}))
        | method | Last | Avg | Forgetting | BWT | Transfer | foreign dLP | foreign dZS |
        | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
        | LDIFS | 80.0 | 80.3 | 10.0 | -10.0 | 40.0 | -3.0 | - |
    """
    _check_summaries(summaries)
    header = ["method", *(title for _, title, _ in _TABLE_COLUMNS)]
    rows = [
        [label, *(_number(metrics.get(key), signed) for key, _, signed in _TABLE_COLUMNS)]
        for label, metrics in summaries.items()
    ]
    return md.markdown_table(header, rows, ["left"] + ["right"] * len(_TABLE_COLUMNS))
