"""``ldifs continual`` / run_continual: stages, references, resume, reports, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ldifs_lightning.continual import run_continual
from ldifs_lightning.models import create_clip

REPO = Path(__file__).resolve().parents[2]
LDIFS = str(Path(sys.executable).parent / "ldifs")
TASKS = ["digits", "fashion", "textures"]
# Small stages: 64 training images (two batches), 64 test images per task.
TINY = [
    "--data.init_args.max_train_samples=64",
    "--data.init_args.max_test_samples=64",
    "--data.init_args.max_val_samples=32",
    "--data.init_args.batch_size=32",
    "--trainer.enable_progress_bar=false",
]


def tiny_run(out: Path, method: str = "continual/demo/ldifs", **options):
    options.setdefault("suite", ["shapes"])
    options.setdefault("max_train_samples", 80)
    options.setdefault("max_test_samples", 40)
    options.setdefault("epochs", 1)
    fit_args = [*TINY, *options.pop("fit_args", [])]
    return run_continual(
        options.pop("tasks", TASKS), method, out=out, cache_dir=None, fit_args=fit_args, **options
    )


def record_args(folder: Path) -> list[str]:
    return [
        "--trainer.callbacks+=tests.continual.recording.RecordStart",
        f"--trainer.callbacks.out={folder}",
    ]


def test_a_three_task_sequence_writes_the_matrix_metrics_and_reports(tmp_path):
    results = tiny_run(tmp_path / "run")
    matrix = results["matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert all(0.0 <= value <= 100.0 for row in matrix for value in row)
    metrics = results["metrics"]
    assert metrics["last"] == pytest.approx(sum(matrix[2]) / 3)
    assert len(metrics["forgetting"]) == 2
    assert len(metrics["foreign_delta_lp"]) == 3 and len(metrics["foreign_delta_zs"]) == 3
    run = tmp_path / "run"
    for name in ["results.json", "matrix.csv", "metrics.csv", "matrix.png", "foreign.png"]:
        assert (run / name).is_file(), name
    assert json.loads((run / "results.json").read_text())["matrix"] == matrix
    for stage, task in enumerate(TASKS):
        folder = run / f"stage-{stage}-{task}"
        for name in ["result.json", "encoder.pt", "head.pt", "config.yaml", "metrics.csv"]:
            assert (folder / name).is_file(), f"{folder.name}/{name}"
        assert (folder / "checkpoints" / "last.ckpt").is_file()
    # Tasks not learned yet are measured with the pre-trained zero-shot head: before any stage,
    # that is the pre-trained model's own zero-shot accuracy on them.
    first = json.loads((run / "stage-0-digits" / "result.json").read_text())
    assert first["row"] == matrix[0]


def test_with_previous_each_stage_starts_from_and_is_held_to_the_previous_encoder(tmp_path):
    records = tmp_path / "records"
    tiny_run(tmp_path / "run", reference="previous", fit_args=record_args(records))
    pretrained = create_clip("ldifs-tiny-vit", "demo").visual.state_dict()
    first = torch.load(records / "digits.pt", weights_only=True)
    assert _equal(first["encoder"], pretrained) and _equal(first["reference"], pretrained)
    for stage, task in [(1, "fashion"), (2, "textures")]:
        previous_task = TASKS[stage - 1]
        previous = torch.load(
            tmp_path / "run" / f"stage-{stage - 1}-{previous_task}" / "encoder.pt",
            weights_only=True,
        )
        assert not _equal(previous, pretrained)  # the stage did train
        record = torch.load(records / f"{task}.pt", weights_only=True)
        assert _equal(record["encoder"], previous)
        assert _equal(record["reference"], previous)


def test_with_original_the_reference_stays_the_pretrained_encoder(tmp_path):
    records = tmp_path / "records"
    tiny_run(
        tmp_path / "run", method="continual/demo/l2sp", reference="original",
        fit_args=record_args(records),
    )  # fmt: skip
    pretrained = create_clip("ldifs-tiny-vit", "demo").visual.state_dict()
    previous = torch.load(tmp_path / "run" / "stage-1-fashion" / "encoder.pt", weights_only=True)
    record = torch.load(records / "textures.pt", weights_only=True)
    assert _equal(record["reference"], pretrained)
    assert _equal(record["encoder"], previous)


def test_best_previous_takes_the_encoder_its_validation_table_ranks_first(tmp_path):
    records = tmp_path / "records"
    tiny_run(
        tmp_path / "run", tasks=TASKS[:2], reference="best_previous", suite=None,
        fit_args=record_args(records),
    )  # fmt: skip
    record = json.loads((tmp_path / "run" / "stage-1-fashion" / "reference.json").read_text())
    table = record["validation_accuracy"]
    assert list(table) == ["pretrained", "stage-0"]
    best = max(table.values())
    expected = [name for name, value in table.items() if value == best][-1]
    assert record["encoder"] == expected
    reference = torch.load(records / "fashion.pt", weights_only=True)["reference"]
    if expected == "pretrained":
        wanted = create_clip("ldifs-tiny-vit", "demo").visual.state_dict()
    else:
        wanted = torch.load(tmp_path / "run" / "stage-0-digits" / "encoder.pt", weights_only=True)
    assert _equal(reference, wanted)


def test_a_killed_stage_resumes_and_the_matrix_equals_an_uninterrupted_run(tmp_path):
    def killer(marker: Path) -> list[str]:
        return [
            "--trainer.callbacks+=tests.continual.recording.KillOnce",
            "--trainer.callbacks.task=fashion",
            "--trainer.callbacks.epoch=1",
            f"--trainer.callbacks.marker={marker}",
        ]

    untouched = tmp_path / "never"
    untouched.write_text("already killed\n")  # this run's killer never fires
    whole = tiny_run(tmp_path / "whole", epochs=2, tasks=TASKS[:2], fit_args=killer(untouched))
    marker = tmp_path / "marker"
    with pytest.raises(RuntimeError, match="killed by the test"):
        tiny_run(tmp_path / "killed", epochs=2, tasks=TASKS[:2], fit_args=killer(marker))
    killed = tmp_path / "killed"
    assert (killed / "stage-0-digits" / "result.json").is_file()
    assert not (killed / "stage-1-fashion" / "result.json").exists()
    assert (killed / "stage-1-fashion" / "checkpoints" / "last.ckpt").is_file()
    stage_0 = (killed / "stage-0-digits" / "result.json").stat().st_mtime_ns
    resumed = tiny_run(killed, epochs=2, tasks=TASKS[:2], fit_args=killer(marker))
    assert (killed / "stage-0-digits" / "result.json").stat().st_mtime_ns == stage_0  # skipped
    assert resumed["matrix"] == whole["matrix"]
    # The killed attempt's log is kept next to the resumed one's.
    assert len(list((killed / "stage-1-fashion").glob("metrics.before-resume-*.csv"))) == 1
    assert resumed["metrics"] == whole["metrics"]


def test_a_run_directory_of_another_config_is_refused_naming_the_key(tmp_path):
    tiny_run(tmp_path / "run", tasks=TASKS[:2], suite=None)
    with pytest.raises(ValueError, match=r"key 'spec\.reference' differs"):
        tiny_run(tmp_path / "run", tasks=TASKS[:2], suite=None, reference="original")


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- bad input
BAD = [
    (["--tasks", "[digits]"], "needs at least two tasks"),
    (["--tasks", "[digits,fashion,digits]"], "task 'digits' is listed twice"),
    (["--tasks", "[digits,nosuch]"], "nosuch"),
    (["--reference", "latest"], "reference"),
    (["--method", "continual/demo/nosuch"], "continual/demo/nosuch"),
    (["--fit_args", "[--model.init_args.nosuch=1]"], "nosuch"),
    (["--suite", "[digits]"], "both tasks and foreign suite members"),
    (["--reference", "best_previous", "--fit_args", "[--data.init_args.val_fraction=0.0001]"],
     "has no validation split"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_input_fails_in_one_line_before_anything_is_written(tmp_path, args, expected):
    from tests.test_cli_errors import assert_one_line_error

    result = _main_in_process(
        ["continual", "--config", "continual/demo", "--out", str(tmp_path / "run"), *args],
        tmp_path,
    )
    assert_one_line_error(result, expected)
    assert not (tmp_path / "run").exists()


def test_zscl_without_reference_data_fails_in_one_line(tmp_path):
    from tests.test_cli_errors import assert_one_line_error

    config = tmp_path / "zscl.yaml"
    config.write_text(
        "config: " + str(REPO / "configs/continual/demo/base.yaml") + "\n"
        "model:\n  init_args:\n    regularizers:\n"
        "      - class_path: ldifs_lightning.regularizers.ZSCL\n"
    )
    result = _main_in_process(
        ["continual", "--config", "continual/demo", "--method", str(config),
         "--out", str(tmp_path / "run")],
        tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, "reference_dataset")
    assert not (tmp_path / "run").exists()


def test_the_executable_runs_help_and_reports_bad_input_in_one_line(tmp_path):
    env_args = dict(capture_output=True, text=True, cwd=tmp_path, timeout=300)
    listing = subprocess.run([LDIFS, "--help"], **env_args)
    assert listing.returncode == 0 and "continual" in listing.stdout
    help_ = subprocess.run([LDIFS, "continual", "--help"], **env_args)
    assert help_.returncode == 0 and "--reference" in help_.stdout
    assert "best_previous" in help_.stdout
    bad = subprocess.run(
        [LDIFS, "continual", "--config", "continual/demo", "--tasks", "[digits,digits]"],
        **env_args,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: task 'digits' is listed twice in ['digits', 'digits']: each task is learned "
        "once, with its own head"
    ]
    assert list(tmp_path.iterdir()) == []


def _main_in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    import os

    from ldifs_lightning.cli import main

    previous = Path.cwd()
    os.chdir(cwd)
    code = 0
    try:
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
