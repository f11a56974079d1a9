"""`ldifs evaluate`: the callback's numbers for saved checkpoints and export folders, offline."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import FLYPModule
from ldifs_lightning import evaluate as evaluate_module
from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.cli import TOOL_SUBCOMMANDS, main
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.evaluate import CSV_COLUMNS, evaluate, evaluate_models
from ldifs_lightning.evaluation.forgetting import encoder_accuracies
from ldifs_lightning.evaluation.suite import registry_suite
from ldifs_lightning.export import export_model
from ldifs_lightning.modules import CLIPFineTuner
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT

SUITE = ["shapes", "digits"]
CAPS = dict(max_train_samples=48, max_test_samples=40)
QUIET = dict(cache_dir=None, batch_size=64, device="cpu")
LDIFS = Path(sys.executable).parent / "ldifs"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a one-epoch `ldifs fit` of the demo config (LDIFS on textures)."""
    root = tmp_path_factory.mktemp("fit")
    # The demo's callback measures three whole domains per epoch: a smaller one keeps this fast.
    override = root / "small-callback.yaml"
    override.write_text(
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: ldifs_lightning.ConceptForgettingCallback\n"
        "      init_args:\n"
        "        suite: [shapes]\n"
        "        metrics: [linear_probe]\n"
        "        max_train_samples: 16\n"
        "        max_test_samples: 16\n"
        "        cache_dir: null\n"
    )
    main(
        [
            "fit",
            "--config",
            "demo/ldifs",
            "--config",
            str(override),
            "--data.init_args.max_train_samples",
            "64",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.default_root_dir",
            str(root),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
        ]
    )
    (path,) = root.rglob("*.ckpt")
    return path


@pytest.fixture(scope="module")
def checkpoint_result(checkpoint):
    (result,) = evaluate_models([checkpoint], SUITE, **CAPS, **QUIET)
    return result


def test_a_checkpoint_gives_the_callbacks_numbers(checkpoint, checkpoint_result):
    module = CLIPFineTuner.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    callback = ConceptForgettingCallback(
        SUITE, model_name=TINY_VIT, pretrained="demo", cache_dir=None, batch_size=64, **CAPS
    )
    expected = callback.evaluate(module.image_encoder, "cpu")
    assert checkpoint_result.metrics == expected
    assert checkpoint_result.pretrained_accuracies == callback.baseline
    assert set(expected) >= {"shapes/lp_acc", "digits/zs_ece", "mean_delta_lp", "mean_delta_zs"}
    assert checkpoint_result.kind == "checkpoint"
    assert checkpoint_result.method == "LDIFSModule"
    assert (checkpoint_result.model_name, checkpoint_result.pretrained) == (TINY_VIT, "demo")
    assert checkpoint_result.text_tower == "pretrained"


def test_the_task_accuracy_is_the_modules_own_test_accuracy(checkpoint, checkpoint_result):
    # The checkpoint records its DataModule's dataset: that is the default task.
    assert checkpoint_result.task == "textures"
    module = CLIPFineTuner.load_from_checkpoint(checkpoint, map_location="cpu")
    data = FineTuneDataModule(
        "textures", image_size=32, batch_size=16, max_test_samples=CAPS["max_test_samples"]
    )
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (tested,) = trainer.test(module, datamodule=data, verbose=False)
    assert checkpoint_result.task_test_images == CAPS["max_test_samples"]
    assert checkpoint_result.task_acc == pytest.approx(100.0 * tested["test/acc"], abs=1e-4)


def test_an_export_folder_gives_the_numbers_of_its_checkpoint(
    checkpoint, checkpoint_result, tmp_path, monkeypatch
):
    folder = tmp_path / "exported"
    export_model(str(folder), ckpt_path=str(checkpoint))
    references = []
    real_reference = evaluate_module.pretrained_reference
    monkeypatch.setattr(
        evaluate_module,
        "pretrained_reference",
        lambda *args, **kwargs: references.append(args[:2]) or real_reference(*args, **kwargs),
    )
    from_checkpoint, from_folder = evaluate_models(
        [checkpoint, folder],
        SUITE,
        model_name=TINY_VIT,
        pretrained="demo",
        task="textures",
        **CAPS,
        **QUIET,
    )
    assert references == [(TINY_VIT, "demo")]  # one baseline for both
    assert from_folder.kind == "export"
    assert from_folder.text_tower == "pretrained"  # the export holds the pre-trained text tower
    for result in (from_checkpoint, from_folder):
        assert result.metrics == checkpoint_result.metrics
        assert result.pretrained_accuracies == checkpoint_result.pretrained_accuracies
        assert result.task_acc == checkpoint_result.task_acc
    # Without a task the folder's head is not tested: the folder does not record its dataset.
    (untested,) = evaluate_models(
        [folder], SUITE, model_name=TINY_VIT, pretrained="demo", metrics=["linear_probe"],
        **CAPS, **QUIET,
    )  # fmt: skip
    assert untested.task is None and untested.task_acc is None


def test_flyp_zero_shot_uses_its_trained_text_tower_in_checkpoint_and_export(tmp_path):
    module = FLYPModule(CLASSNAMES, TEMPLATES, model_name=TINY_VIT, pretrained="demo", lr=1e-2)
    data = DataLoader(
        TensorDataset(torch.randn(12, 3, 32, 32), torch.arange(12) % len(CLASSNAMES)), batch_size=6
    )
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data)
    path = tmp_path / "flyp.ckpt"
    trainer.save_checkpoint(path)
    folder = tmp_path / "flyp-export"
    export_model(str(folder), ckpt_path=str(path))

    suite = ["shapes"]
    (from_checkpoint,) = evaluate_models([path], suite, metrics=["zero_shot"], **CAPS, **QUIET)
    (from_folder,) = evaluate_models(
        [folder], suite, metrics=["zero_shot"], model_name=TINY_VIT, pretrained="demo",
        **CAPS, **QUIET,
    )  # fmt: skip
    members = registry_suite(suite, "data", 32, **CAPS)
    loaded = FLYPModule.load_from_checkpoint(path, map_location="cpu").eval()
    tower = loaded.text_tower
    embeddings = {d.name: tower.class_embeddings(d.classnames, d.templates) for d in members}
    expected = encoder_accuracies(
        loaded.image_encoder,
        members,
        class_embeddings=embeddings,
        metrics=["zero_shot"],
        batch_size=64,
        zero_shot_scale=float(tower.logit_scale.detach().exp()),
    )
    for result in (from_checkpoint, from_folder):
        assert result.text_tower == "current"
        assert result.accuracies == expected
    # No task: a plain Trainer run records no dataset.
    assert from_checkpoint.task is None and from_checkpoint.method == "FLYPModule"


def test_the_command_writes_the_files_and_prints_the_table(checkpoint, tmp_path):
    assert TOOL_SUBCOMMANDS["evaluate"] == "ldifs_lightning.evaluate:evaluate"
    out = tmp_path / "report"
    command = [str(LDIFS), "evaluate", "--paths", f"[{checkpoint}]", "--suite", "[shapes]"]
    command += ["--metrics", "[linear_probe]", "--max_train_samples", "32"]
    command += ["--max_test_samples", "24", "--cache_dir", "null", "--device", "cpu"]
    result = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "dataset           LP pre  LP now     dLP" in result.stdout
    assert "task textures: " in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "evaluation.csv",
        "evaluation.json",
        "evaluation.png",
    ]
    with (out / "evaluation.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(row["model"], row["dataset"], row["task"]) for row in rows] == [
        (str(checkpoint), "shapes", "textures")
    ]
    row = rows[0]
    # delta = fine-tuned - pre-trained, and with one dataset the mean is that delta.
    delta = float(row["lp_acc"]) - float(row["pretrained_lp_acc"])
    assert float(row["delta_lp"]) == pytest.approx(delta)
    assert float(row["mean_delta_lp"]) == pytest.approx(delta)
    assert row["zs_acc"] == "" and row["task_acc"] != ""
    document = json.loads((out / "evaluation.json").read_text())
    assert document["settings"]["max_test_samples"] == 24
    (model,) = document["models"]
    assert model["accuracies"]["shapes"]["lp_acc"] == pytest.approx(float(row["lp_acc"]))


def test_the_command_on_a_bad_path_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "report"
    missing = tmp_path / "nope.ckpt"
    command = [str(LDIFS), "evaluate", "--paths", f"[{missing}]", "--suite", "[shapes]"]
    result = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"path {str(missing)!r} does not exist" in lines[0]
    assert not out.exists()


def _bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty-folder").mkdir()
    half = tmp_path / "half-export"
    half.mkdir()
    (half / "open_clip_config.json").write_text("{}")
    (tmp_path / "garbage.ckpt").write_bytes(b"definitely not a zip or a pickle")
    (tmp_path / "a-file").write_text("")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"paths": ["nope.ckpt"]}, "path 'nope.ckpt' does not exist"),
        ({"paths": ["empty-folder"]}, "path 'empty-folder' is a folder without open_clip_config"),
        (
            {"paths": ["half-export"]},
            "path 'half-export' is a folder with open_clip_config.json but without "
            "open_clip_pytorch_model.bin",
        ),
        (
            {"paths": ["garbage.ckpt"]},
            "path 'garbage.ckpt' is a file that does not load as a checkpoint of ldifs fit",
        ),
        ({"suite": []}, "the suite is empty"),
        ({"suite": ["shape"]}, "unknown dataset 'shape' (did you mean ['shapes']?)"),
        ({"suite": ["eurosat"], "root": "nodata"}, "eurosat: missing ["),
        ({"task": "shape"}, "unknown dataset 'shape'"),
        ({"task": "digits"}, "task='digits' has 10 classes but the head of"),
        ({"paths": ["exported"]}, "is an export folder, which does not record the pre-trained"),
        ({"paths": ["exported"], "model_name": TINY_VIT}, "give pretrained (e.g."),
        ({"out": "a-file"}, "out='a-file' is a file"),
        ({"metrics": ["linear"]}, "metrics=['linear'] must be a non-empty subset"),
    ],
    ids=lambda value: None if isinstance(value, dict) else value,
)
def test_bad_input_is_one_line_before_anything_is_measured(
    checkpoint, tmp_path, monkeypatch, kwargs, expected
):
    _bad_inputs(tmp_path)
    export_model(str(tmp_path / "exported"), ckpt_path=str(checkpoint))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    measured = []
    monkeypatch.setattr(
        "ldifs_lightning.evaluate.encoder_accuracies",
        lambda *args, **kw: measured.append(args) or {},
    )
    arguments = {"paths": [str(checkpoint)], "suite": ["shapes"], "out": Path("report"), **QUIET}
    arguments.update(kwargs)
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        evaluate(**arguments)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert not measured
    assert sorted(p.name for p in tmp_path.iterdir()) == before
