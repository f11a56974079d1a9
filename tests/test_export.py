"""`ldifs export`: open_clip and CLIP_benchmark read the folder; failures write nothing."""

import errno
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import FLYPModule, LDIFSModule
from ldifs_lightning import export as export_module
from ldifs_lightning.data import get_dataset_info
from ldifs_lightning.data.domains.shapes import generate_shapes
from ldifs_lightning.export import (
    CLASSNAMES_FILE,
    CLASSNAMES_JSON,
    CONFIG_FILE,
    EXPORT_FILES,
    HEAD_FILE,
    MODEL_FILE,
    TEMPLATES_FILE,
    TEMPLATES_JSON,
    export_model,
)
from ldifs_lightning.models import create_clip
from ldifs_lightning.pretrained import demo_weights
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT

DEMO = dict(model_name=TINY_VIT, pretrained="demo")


def _checkpoint(tmp_path, module_class=LDIFSModule, **overrides):
    kwargs = dict(lr=1e-2, warmup_steps=1, **DEMO)
    if module_class is LDIFSModule:
        kwargs["ldifs_weight"] = 0.0
    kwargs.update(overrides)
    module = module_class(CLASSNAMES, TEMPLATES, **kwargs)
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
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return module.eval(), path


def _read_lines(path):
    return path.read_text().splitlines()


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def umask():
    """``os.umask`` for one test; the previous umask comes back afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def test_checkpoint_export_loads_in_open_clip_with_the_module_features_and_names(tmp_path):
    module, checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "exported"
    assert export_model(str(out), ckpt_path=str(checkpoint)) == out
    assert {p.name for p in out.iterdir()} == EXPORT_FILES

    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clip.eval().encode_image(images), module.image_encoder(images))
    assert preprocess.transforms[0].size == 32  # the tiny model's input size, from the config

    head = torch.load(out / HEAD_FILE, weights_only=True)
    assert head["classnames"] == CLASSNAMES and head["templates"] == TEMPLATES
    torch.testing.assert_close(head["weight"], module.head.weight.detach())
    torch.testing.assert_close(head["bias"], module.head.bias.detach())
    assert _read_lines(out / CLASSNAMES_FILE) == CLASSNAMES
    curly = _read_lines(out / TEMPLATES_FILE)
    # CLIP_benchmark fills a template with template.format(c=name): the same captions as ours.
    assert [t.format(c="dog") for t in curly] == [t.format("dog") for t in TEMPLATES]
    # A plain Trainer run records no dataset: the .json files use the documented fallback key.
    assert json.loads((out / CLASSNAMES_JSON).read_text()) == {"custom": CLASSNAMES}
    assert json.loads((out / TEMPLATES_JSON).read_text()) == {"custom": curly}


def test_checkpoint_export_keys_the_json_files_by_the_datamodule_dataset(tmp_path):
    _, checkpoint = _checkpoint(tmp_path)
    saved = torch.load(checkpoint, weights_only=True)
    saved["datamodule_hyper_parameters"] = {"dataset": "imagenet"}  # what `ldifs fit` records
    torch.save(saved, checkpoint)
    out = tmp_path / "exported"
    export_model(str(out), ckpt_path=str(checkpoint))
    # CLIP_benchmark calls ImageNet "imagenet1k": both spellings find the names.
    names = json.loads((out / CLASSNAMES_JSON).read_text())
    assert names == {"imagenet": CLASSNAMES, "imagenet1k": CLASSNAMES}


def test_export_keeps_a_trained_text_tower(tmp_path):
    module, checkpoint = _checkpoint(tmp_path, FLYPModule)
    out = tmp_path / "exported"
    export_model(str(out), ckpt_path=str(checkpoint))
    clip = open_clip.create_model(f"local-dir:{out}").eval()
    tokens = open_clip.get_tokenizer(f"local-dir:{out}")(["a photo of a circle."])
    with torch.no_grad():
        torch.testing.assert_close(
            clip.encode_text(tokens), module.text_tower.clip.encode_text(tokens)
        )


def test_pretrained_export_with_a_dataset_writes_its_zero_shot_head(tmp_path):
    out = tmp_path / "demo-shapes"
    export_model(str(out), dataset="shapes", **DEMO)
    info = get_dataset_info("shapes")
    clip = open_clip.create_model(f"local-dir:{out}").eval()
    reference = create_clip(TINY_VIT, "demo").state_dict()
    for key, value in clip.state_dict().items():
        torch.testing.assert_close(value, reference[key], msg=key)

    # The zero-shot head computed here by hand: captions encoded, normalised, averaged per class,
    # renormalised, scaled by exp(logit_scale).
    captions = [t.format(name) for name in info.classnames for t in info.templates]
    tokens = open_clip.get_tokenizer(f"local-dir:{out}")(captions)
    with torch.no_grad():
        per_caption = F.normalize(clip.encode_text(tokens), dim=-1)
        per_class = per_caption.view(len(info.classnames), len(info.templates), -1).mean(dim=1)
        expected = clip.logit_scale.exp() * F.normalize(per_class, dim=-1)
    head = torch.load(out / HEAD_FILE, weights_only=True)
    torch.testing.assert_close(head["weight"], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(head["bias"], torch.zeros(len(info.classnames)))
    assert _read_lines(out / CLASSNAMES_FILE) == list(info.classnames)
    names = json.loads((out / CLASSNAMES_JSON).read_text())
    templates = json.loads((out / TEMPLATES_JSON).read_text())
    assert names == {"shapes": list(info.classnames)}
    assert [t.format(c="x") for t in templates["shapes"]] == [t.format("x") for t in info.templates]


def test_an_image_folder_dataset_is_keyed_by_the_folder_name(tmp_path):
    folder = tmp_path / "my_pets"
    for index, name in enumerate(["cat", "golden_retriever"]):
        (folder / "train" / name).mkdir(parents=True)
        for sample in range(2):
            pixels = np.full((32, 32, 3), 40 * index + sample, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "train" / name / f"{sample}.png")
    out = tmp_path / "exported"
    export_model(str(out), dataset=f"folder:{folder}", **DEMO)
    # Folder names with "_" read as spaces; the key is what `--dataset wds/my_pets` looks up.
    names = json.loads((out / CLASSNAMES_JSON).read_text())
    assert names == {"my_pets": ["cat", "golden retriever"]}
    assert list(json.loads((out / TEMPLATES_JSON).read_text())) == ["my_pets"]


def test_pretrained_export_without_a_dataset_writes_the_model_only(tmp_path):
    out = tmp_path / "demo"
    export_model(str(out), **DEMO)
    assert {p.name for p in out.iterdir()} == {CONFIG_FILE, MODEL_FILE}
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["model_cfg"] == open_clip.get_model_config(TINY_VIT)


def test_pretrained_export_of_a_registered_architecture_and_a_weights_file(tmp_path):
    config = open_clip.get_model_config(TINY_VIT)
    (tmp_path / "my-tiny.json").write_text(json.dumps(config))
    out = tmp_path / "exported"
    export_model(
        str(out),
        model_name="my-tiny",
        pretrained=str(demo_weights(TINY_VIT)),
        model_config=str(tmp_path / "my-tiny.json"),
    )
    assert json.loads((out / CONFIG_FILE).read_text())["model_cfg"] == config
    clip = open_clip.create_model(f"local-dir:{out}")
    reference = create_clip(TINY_VIT, "demo").state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in clip.state_dict().items())


@pytest.mark.parametrize(
    ("mask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
def test_files_get_the_mode_of_the_users_umask(tmp_path, umask, mask, file_mode, folder_mode):
    umask(mask)
    out = tmp_path / "nested" / "exported"
    export_model(str(out), dataset="shapes", **DEMO)
    assert (out.stat().st_mode & 0o777) == folder_mode
    assert ((tmp_path / "nested").stat().st_mode & 0o777) == folder_mode
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == dict.fromkeys(EXPORT_FILES, file_mode)


@pytest.mark.parametrize("atomic_swap", [True, False], ids=["renameat2", "move-aside"])
def test_a_new_export_replaces_a_previous_one_as_a_whole(tmp_path, monkeypatch, atomic_swap):
    out = tmp_path / "exported"
    export_model(str(out), dataset="shapes", **DEMO)
    assert {p.name for p in out.iterdir()} == EXPORT_FILES
    if not atomic_swap:
        monkeypatch.setattr(export_module, "_exchange", lambda first, second: False)
    export_model(str(out), **DEMO)
    assert {p.name for p in out.iterdir()} == {CONFIG_FILE, MODEL_FILE}  # no stale head files
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # no temporary folders left


def test_an_empty_existing_folder_is_used(tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    export_model(str(out), **DEMO)
    assert {p.name for p in out.iterdir()} == {CONFIG_FILE, MODEL_FILE}


class _FullDisk:
    """``torch.save`` that writes part of the second file, then fails as a full disk does."""

    def __init__(self):
        self.calls, self.save = 0, torch.save

    def __call__(self, obj, file, *args, **kwargs):
        self.calls += 1
        if self.calls == 2:
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.save(obj, file, *args, **kwargs)


def test_a_failure_midway_keeps_the_previous_export_untouched(tmp_path, monkeypatch):
    out = tmp_path / "exported"
    export_model(str(out), dataset="shapes", **DEMO)
    before = _snapshot(out)
    monkeypatch.setattr(torch, "save", _FullDisk())
    with pytest.raises(ValueError, match="No space left on device; nothing was written") as error:
        export_model(str(out), dataset="digits", **DEMO)
    assert "\n" not in str(error.value)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]


def test_a_folder_filled_by_another_process_at_the_last_moment_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "exported"
    real_replace = os.replace

    def raced_replace(source, target):
        if os.fspath(target) == os.fspath(
            out
        ):  # another process writes into output_dir just before the move
            out.mkdir(exist_ok=True)
            (out / "theirs.txt").write_text("not ours")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", raced_replace)
    with pytest.raises(
        ValueError, match=r"moving the export into output_dir=.*nothing was written"
    ):
        export_model(str(out), dataset="shapes", **DEMO)
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # no staging folder left


def test_a_failure_midway_leaves_no_folder_and_no_created_parents(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _FullDisk())
    with pytest.raises(ValueError, match="No space left on device"):
        export_model(str(tmp_path / "new" / "deeper" / "exported"), dataset="shapes", **DEMO)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_other_files_is_refused(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / MODEL_FILE).write_text("not ours")
    with pytest.raises(ValueError, match=r"holds 1 entries an export does not write .*notes\.txt"):
        export_model(str(out), **DEMO)
    assert _snapshot(out) == {MODEL_FILE: b"not ours", "notes.txt": b"keep me"}
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


class _NotAllowedByWeightsOnly:
    pass


def _bad_files(tmp_path):
    (tmp_path / "garbage.ckpt").write_bytes(b"definitely not a zip or a pickle")
    torch.save({"visual.proj": torch.zeros(2)}, tmp_path / "weights.pt")
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, tmp_path / "other.ckpt")
    torch.save({"state_dict": {}, "object": _NotAllowedByWeightsOnly()}, tmp_path / "pickle.ckpt")
    hparams = {"classnames": CLASSNAMES, "model_name": TINY_VIT, "pretrained": None}
    empty = {"state_dict": {}, "hyper_parameters": hparams, "pytorch-lightning_version": "2.5.0"}
    torch.save(empty, tmp_path / "empty.ckpt")
    (tmp_path / "a-file").write_text("")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "no model_name and pretrained: give ckpt_path"),
        ({"model_name": TINY_VIT}, "no pretrained: give ckpt_path"),
        ({"pretrained": "demo"}, "no model_name: give ckpt_path"),
        (
            {"ckpt_path": "garbage.ckpt", "model_name": TINY_VIT, "pretrained": "demo"},
            "ckpt_path with model_name='ldifs-tiny-vit', pretrained='demo': a checkpoint brings",
        ),
        ({"ckpt_path": "garbage.ckpt", "dataset": "shapes"}, "ckpt_path with dataset='shapes'"),
        ({"ckpt_path": "nope.ckpt"}, "ckpt_path='nope.ckpt' is not a file"),
        ({"ckpt_path": "garbage.ckpt"}, "ckpt_path='garbage.ckpt' is not a torch checkpoint"),
        ({"ckpt_path": "weights.pt"}, "is a state dict of weights (for pre-trained weights pass"),
        ({"ckpt_path": "other.ckpt"}, "a checkpoint without fine-tuning module hyper-parameters"),
        ({"ckpt_path": "pickle.ckpt"}, "does not load with weights_only=True (it pickles tests."),
        (
            {"ckpt_path": "empty.ckpt"},
            "does not load into a fine-tuning module: Error(s) in loading state_dict for "
            "LDIFSModule: Missing key(s)",
        ),
        ({"dataset": "shape", **DEMO}, "unknown dataset 'shape' (did you mean"),
        ({"model_name": "ViT-B-32", "pretrained": "openai"}, "needs a download"),
        ({"model_name": TINY_VIT, "pretrained": "nope.pt"}, "pretrained='nope.pt' is neither"),
        ({"output_dir": "a-file", **DEMO}, "output_dir='{tmp}/a-file' is a file"),
        ({"output_dir": "a-file/out", **DEMO}, "output_dir='{tmp}/a-file/out' cannot be written"),
    ],
    ids=lambda value: None if isinstance(value, dict) else value,
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, kwargs, expected):
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    kwargs = {"output_dir": "out", **kwargs}
    with pytest.raises(ValueError) as error:
        export_model(**kwargs)
    message = str(error.value)
    assert expected.format(tmp=tmp_path) in message
    assert "\n" not in message
    assert _snapshot(tmp_path) == before  # no export folder, no temporary folder


# ----------------------------------------------------------------------------- CLIP_benchmark


def _clip_benchmark_unusable():
    if importlib.util.find_spec("clip_benchmark") is None or not importlib.util.find_spec(
        "webdataset"
    ):
        return "clip-benchmark (with webdataset) is not installed"
    if tuple(int(part) for part in np.__version__.split(".")[:2]) >= (2, 4):
        # Its accuracy() calls float() on a 1-element array, which numpy 2.4 refuses
        # (LAION-AI/CLIP_benchmark#147).
        return f"clip-benchmark's zero-shot accuracy fails with numpy {np.__version__} (>= 2.4)"
    return None


def _write_webdataset(root, images, labels, classnames):
    """CLIP_benchmark's webdataset layout: test/0.tar (png + cls), nshards.txt, class names."""
    (root / "test").mkdir(parents=True)
    with tarfile.open(root / "test" / "0.tar", "w") as tar:
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            for suffix, data in [("png", png.getvalue()), ("cls", str(int(label)).encode())]:
                member = tarfile.TarInfo(f"{index:06d}.{suffix}")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    (root / "test" / "nshards.txt").write_text("1\n")
    (root / "classnames.txt").write_text("".join(f"{name}\n" for name in classnames))
    (root / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\n")


@pytest.mark.skipif(_clip_benchmark_unusable() is not None, reason=str(_clip_benchmark_unusable()))
def test_clip_benchmark_evaluates_the_export_with_its_class_names(tmp_path):
    out = tmp_path / "exported"
    export_model(str(out), dataset="shapes", **DEMO)
    images, labels = generate_shapes(48, seed=1)
    names = list(get_dataset_info("shapes").classnames)
    # The dataset's own class names are shifted by one: only the export's files score well.
    _write_webdataset(tmp_path / "wds", images, labels, names[1:] + names[:1])
    result = tmp_path / "result.json"
    command = [
        *(sys.executable, "-m", "clip_benchmark.cli", "eval"),
        *("--model", f"local-dir:{out}", "--pretrained", ""),
        *("--dataset", "wds/shapes", "--dataset_root", str(tmp_path / "wds")),
        *("--custom_classname_file", str(out / CLASSNAMES_JSON)),
        *("--custom_template_file", str(out / TEMPLATES_JSON)),
        *("--output", str(result), "--num_workers", "0", "--no_amp"),
        *("--dump_classnames", "--dump_templates"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(result.read_text())
    assert report["classnames"] == names
    assert report["templates"] == json.loads((out / TEMPLATES_JSON).read_text())["shapes"]

    # The same accuracy computed here: open_clip's own preprocessing of the same PNG pixels, the
    # exported head, argmax.
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    head = torch.load(out / HEAD_FILE, weights_only=True)
    batch = torch.stack([preprocess(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        features = F.normalize(clip.eval().encode_image(batch), dim=-1)
    predictions = (features @ head["weight"].T + head["bias"]).argmax(dim=1)
    accuracy = (predictions == torch.as_tensor(labels)).float().mean().item()
    assert accuracy > 0.5  # the demo model knows shapes; chance is 1/8
    assert report["metrics"]["acc1"] == pytest.approx(accuracy, abs=1e-6)
