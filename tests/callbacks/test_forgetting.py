import csv
import socket
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import TensorDataset

from ldifs_lightning import FLYPModule, LDIFSModule
from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.evaluation import forgetting as forgetting_functions
from ldifs_lightning.evaluation.features import extract_features
from ldifs_lightning.evaluation.forgetting import encoder_accuracies, measure_forgetting
from ldifs_lightning.evaluation.suite import ForeignDataset, registry_suite
from ldifs_lightning.models import create_clip, get_tokenizer, zero_shot_class_embeddings
from tests.conftest import TINY_VIT, quiet_trainer
from tests.ece_by_hand import ece_by_hand, softmax_rows

CAPS = dict(max_train_samples=48, max_test_samples=32)


def _callback(tmp_path, **overrides) -> ConceptForgettingCallback:
    kwargs = dict(suite=["shapes"], cache_dir=str(tmp_path / "cache"), batch_size=16, **CAPS)
    kwargs.update(overrides)
    return ConceptForgettingCallback(**kwargs)


def _module() -> LDIFSModule:
    data = FineTuneDataModule("shapes", image_size=32)
    return LDIFSModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained=None,
        lr=1e-3,
        warmup_steps=1,
    )


def _data() -> FineTuneDataModule:
    return FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=32)


def _trainer(tmp_path, callbacks, **overrides) -> Trainer:
    kwargs = dict(max_steps=-1, limit_val_batches=1, callbacks=callbacks)
    kwargs["logger"] = CSVLogger(tmp_path)
    kwargs["enable_checkpointing"] = True
    kwargs.update(overrides)
    return quiet_trainer(tmp_path, **kwargs)


def test_fast_dev_run_logs_every_metric_and_writes_reports(tmp_path):
    callback = _callback(tmp_path)
    trainer = _trainer(tmp_path, [callback], fast_dev_run=1)
    trainer.fit(_module(), datamodule=_data())
    logged = trainer.callback_metrics
    for key in ["lp_acc", "zs_acc", "delta_lp", "delta_zs"]:
        assert f"forgetting/shapes/{key}" in logged
    assert "forgetting/mean_delta_lp" in logged and "forgetting/mean_delta_zs" in logged
    baseline = callback.baseline["shapes"]
    assert logged["forgetting/shapes/delta_lp"].item() == pytest.approx(
        logged["forgetting/shapes/lp_acc"].item() - baseline["lp_acc"], abs=1e-4
    )
    for short in ("lp", "zs"):  # calibration errors travel with the accuracies
        ece = logged[f"forgetting/shapes/{short}_ece"].item()
        assert 0.0 <= ece <= 100.0 and 0.0 <= baseline[f"{short}_ece"] <= 100.0
        delta = logged[f"forgetting/shapes/delta_{short}_ece"].item()
        assert delta == pytest.approx(ece - baseline[f"{short}_ece"], abs=1e-4)
        assert logged[f"forgetting/mean_delta_{short}_ece"].item() == pytest.approx(delta)
    assert (tmp_path / "forgetting.csv").is_file() and (tmp_path / "forgetting.png").is_file()
    with open(tmp_path / "forgetting.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    for short in ("lp", "zs"):
        assert float(row[f"{short}_ece"]) == pytest.approx(
            logged[f"forgetting/shapes/{short}_ece"].item(), abs=1e-4
        )
        assert float(row[f"pretrained_{short}_ece"]) == baseline[f"{short}_ece"]
        assert float(row[f"delta_{short}_ece"]) == pytest.approx(
            float(row[f"{short}_ece"]) - baseline[f"{short}_ece"]
        )


@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")
def test_two_epochs_history_csv_and_resume_keeps_history(tmp_path):
    callback = _callback(tmp_path)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    logger = CSVLogger(tmp_path, name="run")
    trainer = _trainer(tmp_path, [callback, checkpoint], max_epochs=2, logger=logger)
    trainer.fit(_module(), datamodule=_data())
    assert [entry["epoch"] for entry in callback.history] == [0, 1]
    with open(tmp_path / "run/version_0/forgetting.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert float(rows[1]["delta_lp"]) == pytest.approx(
        float(rows[1]["lp_acc"]) - float(rows[1]["pretrained_lp_acc"])
    )
    with open(tmp_path / "run/version_0/metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("forgetting/mean_delta_lp")]
    assert len(logged) == 2

    # Resume from the epoch-0 checkpoint: history and baseline come back, no baseline re-measure.
    resumed = _callback(tmp_path)
    calls = []
    real = forgetting_functions.encoder_accuracies

    def spy(*args, **kwargs):
        calls.append(kwargs.get("cache") is not None)
        return real(*args, **kwargs)

    pytest.MonkeyPatch().setattr("ldifs_lightning.callbacks.forgetting.encoder_accuracies", spy)
    trainer = _trainer(tmp_path / "resumed", [resumed], max_epochs=2, logger=False)
    epoch0 = next((tmp_path / "ckpt").glob("epoch=0*.ckpt"))
    trainer.fit(_module(), datamodule=_data(), ckpt_path=epoch0)
    assert [entry["epoch"] for entry in resumed.history] == [0, 1]
    assert resumed.baseline == callback.baseline
    assert calls == [False]  # only the current encoder of epoch 1 was measured


def _saved_clip(tmp_path) -> str:
    path = tmp_path / "tiny-clip.pt"
    torch.save(create_clip(TINY_VIT).state_dict(), path)
    return str(path)


def test_standalone_evaluate_without_trainer(tmp_path):
    weights = _saved_clip(tmp_path)
    callback = _callback(tmp_path, model_name=TINY_VIT, pretrained=weights)
    same = callback.evaluate(create_clip(TINY_VIT, weights).visual)
    assert same["shapes/delta_lp"] == 0.0 and same["shapes/delta_zs"] == 0.0
    assert same["mean_delta_lp"] == 0.0 and same["mean_delta_zs"] == 0.0
    assert same["shapes/delta_lp_ece"] == 0.0 and same["mean_delta_zs_ece"] == 0.0

    changed = create_clip(TINY_VIT, weights).visual
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    other = callback.evaluate(changed)
    assert set(other) == set(same)
    assert other["shapes/lp_acc"] != same["shapes/lp_acc"]

    # zs_ece: softmax over the pre-trained model's logit_scale.exp() x cosine, binned by hand.
    clip = create_clip(TINY_VIT, weights).eval()
    (member,) = registry_suite(["shapes"], "data", 32, **CAPS)
    classes = zero_shot_class_embeddings(
        clip, get_tokenizer(TINY_VIT), member.classnames, member.templates
    )
    features, labels = extract_features(clip.visual, member.test, batch_size=16)
    scale = float(clip.logit_scale.detach().exp())
    logits = [
        [scale * float(torch.dot(x, c) / (x.norm() * c.norm())) for c in classes] for x in features
    ]
    expected = ece_by_hand(softmax_rows(logits), labels.tolist(), bins=15)
    assert same["shapes/zs_ece"] == pytest.approx(expected, abs=1e-3)


def test_second_run_hits_the_cache_for_pretrained_features(tmp_path, monkeypatch):
    calls = []
    real = forgetting_functions.extract_features

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(forgetting_functions, "extract_features", counting)
    suite = registry_suite(["shapes"], "data", 32, **CAPS)
    torch.manual_seed(0)
    encoder = create_clip(TINY_VIT).visual
    from ldifs_lightning.evaluation.feature_cache import FeatureCache

    cache = FeatureCache(tmp_path / "cache")
    first = encoder_accuracies(encoder, suite, metrics=["linear_probe"], cache=cache)
    assert len(calls) == 2  # train and test features
    second = encoder_accuracies(encoder, suite, metrics=["linear_probe"], cache=cache)
    assert len(calls) == 2 and second == first


def test_measure_forgetting_is_zero_for_identical_encoders():
    suite = registry_suite(["shapes"], "data", 32, **CAPS)
    torch.manual_seed(0)
    encoder = create_clip(TINY_VIT).visual
    deltas = measure_forgetting(encoder, encoder, suite)
    assert deltas["shapes/delta_lp"] == 0.0 and deltas["mean_delta_lp"] == 0.0


def test_user_dataset_objects_in_the_suite():
    images, labels = torch.randn(40, 3, 32, 32), torch.arange(40) % 2
    member = ForeignDataset("mine", TensorDataset(images, labels), TensorDataset(images, labels))
    torch.manual_seed(0)
    encoder = create_clip(TINY_VIT).visual
    result = encoder_accuracies(encoder, [member], metrics=["linear_probe"])
    assert 0.0 <= result["mine"]["lp_acc"] <= 100.0


def _ddp_worker(rank: int, port: int, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    suite = registry_suite(["shapes"], "data", 32, max_train_samples=45, max_test_samples=31)
    torch.manual_seed(0)
    encoder = create_clip(TINY_VIT).visual
    out[rank] = encoder_accuracies(encoder, suite, metrics=["linear_probe"])
    dist.destroy_process_group()


def test_two_process_results_equal_one_process_results():
    suite = registry_suite(["shapes"], "data", 32, max_train_samples=45, max_test_samples=31)
    torch.manual_seed(0)
    single = encoder_accuracies(create_clip(TINY_VIT).visual, suite, metrics=["linear_probe"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(port, out), nprocs=2, join=True)
    for rank in (0, 1):
        assert out[rank]["shapes"]["lp_acc"] == pytest.approx(single["shapes"]["lp_acc"], abs=1e-2)


class _NoEncoder(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"suite": []}, "the forgetting suite is empty"),
        ({"suite": ["shape"]}, r"unknown dataset 'shape' \(did you mean \['shapes'\]\?\)"),
        ({"max_train_samples": 0}, "max_train_samples=0 must be a positive number"),
        ({"metrics": ["knn"]}, r"metrics=\['knn'\] must be a non-empty subset"),
    ],
)
def test_bad_configuration(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        _callback(tmp_path, **kwargs)


def test_zero_shot_needs_class_names(tmp_path):
    data = TensorDataset(torch.randn(4, 3, 32, 32), torch.arange(4) % 2)
    with pytest.raises(ValueError, match="dataset 'mine' has no class names"):
        _callback(tmp_path, suite=[ForeignDataset("mine", data, data)])


def test_module_without_encoder_says_how_to_pass_one(tmp_path):
    callback = _callback(tmp_path, metrics=["linear_probe"])
    with pytest.raises(
        ValueError, match=r"no image encoder on _NoEncoder: .*encoder=lambda module"
    ):
        callback.setup(Trainer(accelerator="cpu", logger=False), _NoEncoder(), "fit")


def test_unwritable_cache_falls_back_with_a_warning(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    callback = _callback(tmp_path, cache_dir=str(blocker / "cache"), model_name=TINY_VIT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = callback.evaluate(create_clip(TINY_VIT).visual)
        metrics = callback.evaluate(create_clip(TINY_VIT).visual)
    disabled = [w for w in caught if "feature cache disabled" in str(w.message)]
    assert len(disabled) == 1
    assert "shapes/lp_acc" in metrics


def test_flyp_zero_shot_uses_the_current_text_tower(tmp_path, monkeypatch):
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=32)
    module = FLYPModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained=None,
        lr=1e-3,
        warmup_steps=1,
    )
    seen, scales = [], []
    real = forgetting_functions.encoder_accuracies

    def spy(encoder, suite, **kwargs):
        seen.append(kwargs["class_embeddings"]["shapes"].clone())
        scales.append(kwargs["zero_shot_scale"])
        return real(encoder, suite, **kwargs)

    monkeypatch.setattr("ldifs_lightning.callbacks.forgetting.encoder_accuracies", spy)
    callback = _callback(tmp_path)
    _trainer(tmp_path, [callback], max_epochs=1, logger=False).fit(module, datamodule=data)
    expected = module.text_tower.class_embeddings(data.classnames, data.templates)
    torch.testing.assert_close(seen[-1], expected)
    assert not torch.equal(seen[0], seen[-1])  # baseline: pre-trained text tower
    # zs_ece: the logit scale belongs with the text tower the class embeddings come from
    assert scales[-1] == pytest.approx(float(module.text_tower.logit_scale.detach().exp()))
    assert scales[0] == pytest.approx(float(create_clip(TINY_VIT).logit_scale.detach().exp()))
    assert callback.history[-1]["text_tower"] == "current"
    with open(tmp_path / "forgetting.csv") as handle:
        assert [row["zero_shot_text_tower"] for row in csv.DictReader(handle)] == ["current"]


def test_probe_failure_is_one_line_naming_the_dataset():
    images = torch.randn(10, 3, 32, 32)
    one_class = TensorDataset(images, torch.zeros(10, dtype=torch.long))
    member = ForeignDataset("mine", one_class, one_class)
    with pytest.raises(ValueError, match=r"^mine: "):
        encoder_accuracies(create_clip(TINY_VIT).visual, [member], metrics=["linear_probe"])


def test_two_callbacks_keep_separate_state(tmp_path):
    lp = _callback(tmp_path, metrics=["linear_probe"])
    zs = _callback(tmp_path, metrics=["zero_shot"])
    assert lp.state_key != zs.state_key


# ------------------------------------------------------------------ final_full_size
FULL_TEST_CAPS = dict(max_train_samples=50, max_test_samples=40)
SHAPES_WHOLE = (2400, 800)  # shapes' train and test split sizes


def _textures_fit(tmp_path, name: str, final_full_size: bool, cache: str = "cache"):
    """One epoch of LDIFS on 32 textures images from the shipped tiny CLIP, watching shapes."""
    torch.manual_seed(0)
    data = FineTuneDataModule("textures", image_size=32, batch_size=16, max_train_samples=32)
    module = LDIFSModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained="demo",
        lr=1e-3,
        warmup_steps=1,
    )
    callback = ConceptForgettingCallback(
        ["shapes"],
        cache_dir=str(tmp_path / cache),
        batch_size=64,
        final_full_size=final_full_size,
        **FULL_TEST_CAPS,
    )
    logger = CSVLogger(tmp_path, name=name)
    trainer = _trainer(tmp_path, [callback], max_epochs=1, logger=logger)
    trainer.fit(module, datamodule=data)
    return callback, module, trainer, tmp_path / name / "version_0"


def _demo_zero_shot() -> tuple[torch.nn.Module, dict, float]:
    clip = create_clip(TINY_VIT, "demo").eval()
    (member,) = registry_suite(["shapes"], "data", 32, max_train_samples=1, max_test_samples=1)
    embeddings = zero_shot_class_embeddings(
        clip, get_tokenizer(TINY_VIT), member.classnames, member.templates
    )
    return clip.visual, {"shapes": embeddings}, float(clip.logit_scale.detach().exp())


class _Runs(NamedTuple):
    tmp_path: Path
    off: tuple  # (callback, module, trainer, log dir) of a fit without final_full_size
    on: tuple  # the same fit with it
    again: tuple  # the fit with it once more, on the same feature cache
    on_sizes: list[int]  # sizes of the datasets whose features the "on" fit extracted
    again_sizes: list[int]


@pytest.fixture(scope="module")
def full_size_runs(tmp_path_factory) -> _Runs:
    """Three short fits shared by the final_full_size tests (whole splits take seconds)."""
    tmp_path = tmp_path_factory.mktemp("full_size")
    sizes: list[int] = []
    real = forgetting_functions.extract_features

    def counting(encoder, dataset, **kwargs):
        sizes.append(len(dataset))
        return real(encoder, dataset, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forgetting_functions, "extract_features", counting)
        off = _textures_fit(tmp_path, "off", final_full_size=False, cache="cache-off")
        sizes.clear()
        on = _textures_fit(tmp_path, "on", final_full_size=True)
        on_sizes = list(sizes)
        cache_files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.pt")}
        sizes.clear()
        again = _textures_fit(tmp_path, "again", final_full_size=True)
        again_sizes = list(sizes)
    assert len(cache_files) == 4  # capped and whole splits, train and test
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.pt")} == cache_files
    return _Runs(tmp_path, off, on, again, on_sizes, again_sizes)


def test_final_full_size_keeps_the_capped_history(full_size_runs):
    off, _, off_trainer, off_dir = full_size_runs.off
    on, _, trainer, on_dir = full_size_runs.on
    assert on.history == off.history and on.baseline == off.baseline
    with open(on_dir / "forgetting.csv") as handle, open(off_dir / "forgetting.csv") as other:
        assert handle.read() == other.read()
    assert off.final_full is None and off.full_baseline == {}
    assert not (off_dir / "forgetting_full.csv").exists()
    assert not any(key.startswith("forgetting_full/") for key in off_trainer.callback_metrics)
    assert on.final_full is not None
    assert on.final_full["epoch"] == on.history[-1]["epoch"] == 0
    assert on.final_full["step"] == on.history[-1]["step"] == trainer.global_step


def test_final_full_size_equals_the_whole_split_measurement(full_size_runs):
    on, module, trainer, on_dir = full_size_runs.on
    (whole,) = registry_suite(["shapes"], "data", 32, max_train_samples=None, max_test_samples=None)
    assert (len(whole.train), len(whole.test)) == SHAPES_WHOLE
    pretrained, embeddings, scale = _demo_zero_shot()
    options = dict(
        class_embeddings=embeddings,
        metrics=["linear_probe", "zero_shot"],
        batch_size=64,
        zero_shot_scale=scale,
    )
    before = encoder_accuracies(pretrained, [whole], **options)
    final = encoder_accuracies(module.image_encoder, [whole], **options)["shapes"]
    deltas = measure_forgetting(None, module.image_encoder, [whole], baseline=before, **options)
    before = before["shapes"]
    assert set(final) == {"lp_acc", "lp_ece", "zs_acc", "zs_ece"}
    for key in final:
        assert on.final_full["accuracies"]["shapes"][key] == pytest.approx(final[key], abs=1e-4)
        assert on.full_baseline["shapes"][key] == pytest.approx(before[key], abs=1e-4)
    assert deltas["shapes/delta_lp"] == pytest.approx(final["lp_acc"] - before["lp_acc"])
    # A zero-shot accuracy on 800 test images is a multiple of 1/8 %; on 40, of 2.5 %.
    assert final["zs_acc"] * 8 == pytest.approx(round(final["zs_acc"] * 8), abs=1e-6)

    # Logged under forgetting_full/ (loggers and callback_metrics), written as forgetting_full.csv.
    for key in ["shapes/lp_acc", "shapes/delta_lp", "shapes/delta_zs", "mean_delta_lp"]:
        value = trainer.callback_metrics[f"forgetting_full/{key}"].item()
        assert value == pytest.approx(deltas[key], abs=1e-4)
    with open(on_dir / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("forgetting_full/mean_delta_zs")]
    assert len(logged) == 1
    assert float(logged[0]["forgetting_full/mean_delta_zs"]) == pytest.approx(
        deltas["mean_delta_zs"], abs=1e-4
    )
    assert logged[0]["forgetting/mean_delta_zs"] == ""  # the capped keys stay separate
    with open(on_dir / "forgetting_full.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["dataset"] == "shapes" and row["epoch"] == "0"
    for column, key in [("delta_lp", "shapes/delta_lp"), ("zs_ece", "shapes/zs_ece")]:
        assert float(row[column]) == pytest.approx(deltas[key], abs=1e-4)


def test_second_fit_reads_the_whole_split_baseline_from_the_cache(full_size_runs):
    whole_train, whole_test = SHAPES_WHOLE
    # capped baseline (test, train), whole-split baseline, the epoch, the final whole splits
    assert full_size_runs.on_sizes == [40, 50, whole_test, whole_train] * 2
    # the second fit extracts only the fine-tuned encoder's features (the fixture also checks
    # that the cache's files were left as they were)
    assert full_size_runs.again_sizes == [40, 50, whole_test, whole_train]
    assert full_size_runs.again[0].full_baseline == full_size_runs.on[0].full_baseline


def test_standalone_evaluate_on_whole_splits(full_size_runs, monkeypatch):
    sizes: list[int] = []
    real = forgetting_functions.extract_features

    def counting(encoder, dataset, **kwargs):
        sizes.append(len(dataset))
        return real(encoder, dataset, **kwargs)

    monkeypatch.setattr(forgetting_functions, "extract_features", counting)
    callback = _callback(
        full_size_runs.tmp_path, model_name=TINY_VIT, pretrained="demo", batch_size=64,
        **FULL_TEST_CAPS,
    )  # fmt: skip
    pretrained, *_ = _demo_zero_shot()
    full = callback.evaluate(pretrained, full_size=True)
    # The whole-split baseline comes from the fits' cache; the encoder is measured on whole splits.
    assert sizes == [SHAPES_WHOLE[1], SHAPES_WHOLE[0]]
    assert callback.full_baseline == full_size_runs.on[0].full_baseline
    assert full["shapes/delta_lp"] == 0.0 and full["mean_delta_zs"] == 0.0
    assert callback.baseline == {}  # the capped baseline is not measured for it
    sizes.clear()
    capped = callback.evaluate(pretrained)
    assert sizes == [40, 50]  # baseline from the cache again, then the encoder, capped
    assert capped["shapes/delta_lp"] == 0.0 and callback.baseline == full_size_runs.on[0].baseline


def test_every_data_config_measures_whole_splits_at_the_end():
    import yaml

    from ldifs_lightning.config_files import shipped_configs_dir

    paths = sorted((shipped_configs_dir() / "data").glob("*.yaml"))
    assert len(paths) >= 12
    for path in paths:
        callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
        (forgetting,) = [c for c in callbacks if c["class_path"].endswith("ForgettingCallback")]
        assert forgetting["init_args"]["final_full_size"] is True, path.name
        # the capped per-epoch monitoring stays
        assert forgetting["init_args"]["max_train_samples"] == 2000, path.name
