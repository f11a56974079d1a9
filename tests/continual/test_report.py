"""Continual reports: CSV round trips, atomic PNGs with the zero-shot cells marked, tables."""

import csv
import math

import pytest
from matplotlib.figure import Figure

from ldifs_lightning.continual import report
from ldifs_lightning.continual.report import (
    format_continual_table,
    markdown_table,
    plot_foreign_deltas,
    plot_matrix,
    write_matrix_csv,
    write_metrics_csv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ["digits", "fashion", "folder:/data/my,task"]
# 1/3 and 2/3 check that the CSV keeps every digit; a comma in a task name checks the quoting.
R = [
    [1 / 3, 40.0, 12.5],
    [76.0, 2 / 3, 20.0],
    [60.0, 85.0, 77.0],
]
FT = {
    "last": 74.0,
    "avg": 79.95,
    "forgetting": [16.0, 6.0],
    "mean_forgetting": 11.0,
    "bwt": -11.04,
    "transfer": 28.125,
    "foreign_delta_lp": [-1.0, -2.0, -3.06],
    "foreign_delta_zs": [-2.0, -4.0, -12.5],
    "final_delta_lp": -3.06,
    "final_delta_zs": -12.5,
}
# A run without a foreign suite: no delta keys at all.
LDIFS_NO_SUITE = {
    "last": 81.0,
    "avg": 83.44,
    "forgetting": [2.0, 0.0],
    "mean_forgetting": 1.0,
    "bwt": 0.0,
    "transfer": 30.0,
}
SUMMARIES = {"FT": FT, "LDIFS (lambda 10)": LDIFS_NO_SUITE}


def _captured_figure(monkeypatch):
    """Make report._save keep the figure instead of writing it; return the holder."""
    captured = {}

    def keep(figure, path, dpi):
        captured["figure"] = figure

    monkeypatch.setattr(report, "_save", keep)
    return captured


def _fail_savefig(monkeypatch):
    def fail(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail)


# ---------------------------------------------------------------- CSV files


def test_matrix_csv_parses_back_to_the_inputs(tmp_path):
    path = tmp_path / "nested" / "matrix.csv"
    write_matrix_csv(path, TASKS, R)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["stage", *TASKS]
    assert [row[0] for row in rows[1:]] == TASKS
    assert [[float(cell) for cell in row[1:]] for row in rows[1:]] == R
    assert len(rows) == 4


def test_matrix_csv_rejects_tasks_that_do_not_match(tmp_path):
    path = tmp_path / "matrix.csv"
    with pytest.raises(ValueError, match="tasks must be 3 non-empty names"):
        write_matrix_csv(path, TASKS[:2], R)
    with pytest.raises(ValueError, match="tasks must be distinct"):
        write_matrix_csv(path, ["a", "b", "a"], R)
    with pytest.raises(ValueError, match="finite"):
        write_matrix_csv(path, TASKS, [[math.nan, 1.0, 1.0], R[1], R[2]])
    assert not path.exists()


def test_metrics_csv_parses_back_to_the_inputs(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old contents\n")
    write_metrics_csv(path, SUMMARIES)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "label",
        "last",
        "avg",
        "mean_forgetting",
        "bwt",
        "transfer",
        "final_delta_lp",
        "final_delta_zs",
    ]
    assert [row["label"] for row in rows] == ["FT", "LDIFS (lambda 10)"]
    for row, metrics in zip(rows, SUMMARIES.values(), strict=True):
        for key in ("last", "avg", "mean_forgetting", "bwt", "transfer"):
            assert float(row[key]) == metrics[key]
    assert (float(rows[0]["final_delta_lp"]), float(rows[0]["final_delta_zs"])) == (-3.06, -12.5)
    assert (rows[1]["final_delta_lp"], rows[1]["final_delta_zs"]) == ("", "")


def test_metrics_csv_rejects_incomplete_summaries(tmp_path):
    with pytest.raises(ValueError, match=r"summary 'FT' lacks \['bwt'\]"):
        write_metrics_csv(tmp_path / "m.csv", {"FT": {k: v for k, v in FT.items() if k != "bwt"}})
    with pytest.raises(ValueError, match="summaries is empty"):
        write_metrics_csv(tmp_path / "m.csv", {})
    assert not (tmp_path / "m.csv").exists()


# ---------------------------------------------------------------- plots


def test_plot_matrix_writes_a_png(tmp_path):
    path = tmp_path / "out" / "matrix.png"
    plot_matrix(path, TASKS, R, "FT: accuracy (%)")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["matrix.png"]


def test_plot_matrix_hatches_exactly_the_zero_shot_cells(monkeypatch, tmp_path):
    captured = _captured_figure(monkeypatch)
    plot_matrix(tmp_path / "m.png", TASKS, R, "FT")
    ax = captured["figure"].axes[0]
    hatched = {
        (round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches if p.get_hatch()
    }
    # (column j, row i) for j > i
    assert hatched == {(1, 0), (2, 0), (2, 1)}
    assert "zero-shot" in ax.get_title()
    cells = {
        (round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts
    }
    assert cells[(0, 0)] == "0.3"
    assert cells[(1, 1)] == "0.7"
    assert cells[(2, 0)] == "12.5"  # R[0][2]: row 0, column 2
    assert cells[(0, 2)] == "60.0"  # R[2][0]
    assert len(cells) == 9
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"after {t}" for t in TASKS]
    assert [t.get_text() for t in ax.get_xticklabels()] == TASKS


def test_failed_plot_matrix_leaves_no_file(monkeypatch, tmp_path):
    _fail_savefig(monkeypatch)
    path = tmp_path / "matrix.png"
    with pytest.raises(RuntimeError, match="disk full"):
        plot_matrix(path, TASKS, R, "FT")
    assert list(tmp_path.iterdir()) == []


def test_failed_plot_matrix_keeps_the_existing_file(monkeypatch, tmp_path):
    path = tmp_path / "matrix.png"
    plot_matrix(path, TASKS, R, "FT")
    before = path.read_bytes()
    _fail_savefig(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_matrix(path, TASKS, [[50.0] * 3] * 3, "other")
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


FOREIGN = {
    "FT": [
        {"mean_delta_lp": -1.0, "mean_delta_zs": -2.0},
        {"mean_delta_lp": -2.0, "mean_delta_zs": -4.0},
        {"mean_delta_lp": -3.0, "mean_delta_zs": -12.5},
    ],
    "LDIFS": [{"mean_delta_lp": -0.5}, None, {"mean_delta_lp": -1.0}],
}


def test_plot_foreign_deltas_writes_a_png(tmp_path):
    path = tmp_path / "foreign.png"
    plot_foreign_deltas(path, TASKS, FOREIGN)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_foreign_deltas_draws_one_line_per_method_and_panel(monkeypatch, tmp_path):
    captured = _captured_figure(monkeypatch)
    plot_foreign_deltas(tmp_path / "f.png", TASKS, FOREIGN)
    lp, zs = captured["figure"].axes
    lines = {
        line.get_label(): list(line.get_ydata()) for line in lp.lines if line.get_label()[0] != "_"
    }
    assert lines["FT"] == [-1.0, -2.0, -3.0]
    assert lines["LDIFS"][0] == -0.5 and math.isnan(lines["LDIFS"][1]) and lines["LDIFS"][2] == -1.0
    # LDIFS measured no zero-shot: no line for it in the ZS panel
    labels = [line.get_label() for line in zs.lines if line.get_label()[0] != "_"]
    assert labels == ["FT"]
    assert "LP" in lp.get_title() and "ZS" in zs.get_title()
    assert [t.get_text() for t in lp.get_xticklabels()] == TASKS


def test_plot_foreign_deltas_checks_lengths_and_keeps_the_file_on_failure(monkeypatch, tmp_path):
    path = tmp_path / "foreign.png"
    with pytest.raises(ValueError, match="'LDIFS' has 2 foreign entries, need one per task"):
        plot_foreign_deltas(path, TASKS, {"LDIFS": FOREIGN["LDIFS"][:2]})
    with pytest.raises(ValueError, match="foreign_by_method is empty"):
        plot_foreign_deltas(path, TASKS, {})
    assert not path.exists()
    plot_foreign_deltas(path, TASKS, FOREIGN)
    before = path.read_bytes()
    _fail_savefig(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_foreign_deltas(path, TASKS, {"FT": FOREIGN["FT"]})
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------- tables


def test_console_table_lines():
    assert format_continual_table(SUMMARIES).splitlines() == [
        "method             Last   Avg  Forgetting    BWT  Transfer  foreign dLP  foreign dZS",
        "-----------------  ----  ----  ----------  -----  --------  -----------  -----------",
        "FT                 74.0  80.0        11.0  -11.0      28.1         -3.1        -12.5",
        "LDIFS (lambda 10)  81.0  83.4         1.0    0.0      30.0            -            -",
    ]


def test_markdown_table_lines():
    assert markdown_table(SUMMARIES).splitlines() == [
        "| method | Last | Avg | Forgetting | BWT | Transfer | foreign dLP | foreign dZS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| FT | 74.0 | 80.0 | 11.0 | -11.0 | 28.1 | -3.1 | -12.5 |",
        "| LDIFS (lambda 10) | 81.0 | 83.4 | 1.0 | 0.0 | 30.0 | - | - |",
    ]


def test_tables_show_gains_with_a_plus_sign():
    gain = {**LDIFS_NO_SUITE, "bwt": 1.26, "final_delta_lp": 0.44, "final_delta_zs": None}
    assert markdown_table({"x": gain}).splitlines()[2] == (
        "| x | 81.0 | 83.4 | 1.0 | +1.3 | 30.0 | +0.4 | - |"
    )


@pytest.mark.parametrize("table", [format_continual_table, markdown_table])
def test_tables_reject_bad_summaries(table):
    with pytest.raises(ValueError, match="summaries is empty"):
        table({})
    with pytest.raises(ValueError, match=r"summary 'x' lacks \['last', 'avg'"):
        table({"x": {"bwt": 0.0}})
