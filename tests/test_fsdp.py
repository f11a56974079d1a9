"""LDIFSModule sharded with FSDP2 (Lightning's ModelParallelStrategy) on CPU with gloo.

The 2-process runs execute this file as a script (Lightning starts rank 1 by running the same
command again); the tests compare what it writes with a 1-process run in the test process: the
same data (each rank takes every other sample of the 1-process batch), seed and schedule.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ldifs_lightning import FLYPModule, LDIFSModule
from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.regularizers import L2SP

CLASSES = ["stripes", "dots", "rings"]
METHODS = {
    "ldifs": {"ldifs_weight": 50.0},
    "l2sp": {"ldifs_weight": 0.0, "regularizers": [L2SP(weight=5.0)]},
}
PER_RANK_BATCH = 4
STEPS_PER_EPOCH = 2


def _dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(PER_RANK_BATCH * 2 * STEPS_PER_EPOCH, 3, 32, 32, generator=generator)
    labels = torch.randint(0, len(CLASSES), (images.shape[0],), generator=generator)
    return TensorDataset(images, labels)


def _module(method: str, **overrides) -> LDIFSModule:
    seed_everything(0)
    # A regulariser binds to one module's encoder: every module gets its own.
    options = dict(copy.deepcopy(METHODS[method]), lr=1e-3, warmup_steps=0, weight_decay=0.1)
    options.update(overrides)
    return LDIFSModule(CLASSES, model_name="ldifs-tiny-vit", pretrained="demo", **options)


class _RecordLosses(Callback):
    """Records each step's loss; optionally stops after the first epoch (same lr schedule)."""

    def __init__(self, stop_after_first_epoch: bool = False) -> None:
        self.losses: list[float] = []
        self.stop = stop_after_first_epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = trainer.should_stop or self.stop


def _probe_images() -> torch.Tensor:
    return torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _fit(module, strategy, devices: int, batch_size: int, ckpt_path=None, first_epoch=False):
    """Fit 2 epochs (or only the first, with the 2-epoch schedule); the per-step losses."""
    record = _RecordLosses(stop_after_first_epoch=first_epoch)
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
    )
    dataset = _dataset()
    # Lightning's own distributed sampler shuffles training data; this one keeps the order, so
    # rank r takes samples r, r + 2, ... (given before fit: rank 1 is started inside fit).
    rank = int(os.environ.get("LOCAL_RANK", 0))
    sampler = DistributedSampler(dataset, num_replicas=devices, rank=rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer, record.losses


def _worker(method: str, out: Path, activation_checkpointing: bool) -> None:
    """2 processes: one epoch, a sharded checkpoint, a second epoch resumed from it, a full one."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    def strategy(distributed: bool) -> ModelParallelStrategy:
        return ModelParallelStrategy(
            data_parallel_size=2, tensor_parallel_size=1, save_distributed_checkpoint=distributed
        )

    options = {"activation_checkpointing": activation_checkpointing}
    module = _module(method, **options)
    trainer, first = _fit(module, strategy(True), 2, PER_RANK_BATCH, first_epoch=True)
    kinds = sorted({type(p).__name__ for p in module.parameters()})
    trainer.save_checkpoint(out / "sharded")  # a folder: one file per rank + metadata

    module = _module(method, **options)
    trainer, second = _fit(module, strategy(False), 2, PER_RANK_BATCH, ckpt_path=out / "sharded")
    with torch.no_grad():  # every rank runs the forward: each FSDP unit all-gathers its shards
        logits = module(_probe_images())
    trainer.save_checkpoint(out / "full.ckpt")  # one file, gathered on rank 0
    result = {"losses": first + second, "parameter_types": kinds, "logits": logits.tolist()}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


def _forgetting_callback(out: Path) -> ConceptForgettingCallback:
    return ConceptForgettingCallback(
        ["shapes"],
        cache_dir=str(out / "cache"),
        batch_size=16,
        max_train_samples=48,
        max_test_samples=32,
    )


def _fit_with_callback(out: Path, precision: str, devices: int, strategy) -> dict:
    """One epoch of LDIFS with a ConceptForgettingCallback: losses, its metrics, copy dtypes."""
    module = _module("ldifs")
    callback = _forgetting_callback(out)
    record = _RecordLosses()
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        precision=precision,
        max_epochs=1,
        logger=False,
        default_root_dir=out,  # the callback's forgetting.csv and plot
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record, callback],
    )
    dataset = _dataset()
    rank = int(os.environ.get("LOCAL_RANK", 0))
    sampler = DistributedSampler(dataset, num_replicas=devices, rank=rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=2 * PER_RANK_BATCH // devices, sampler=sampler)
    trainer.fit(module, loader)
    metrics = trainer.callback_metrics
    return {
        "losses": record.losses,
        "forgetting": {k: float(v) for k, v in metrics.items() if k.startswith("forgetting/")},
        "baseline": callback.baseline,
        "reference_dtypes": sorted({str(p.dtype) for p in module.reference_encoder.parameters()}),
        "parameter_types": sorted({type(p).__name__ for p in module.parameters()}),
        "not_sharded": [n for n, p in module.named_parameters() if type(p).__name__ != "DTensor"],
    }


def _callback_worker(out: Path, precision: str) -> None:
    """2 processes under FSDP2: one epoch of LDIFS with the forgetting callback."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    result = _fit_with_callback(out, precision, 2, strategy)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def _run_two_processes(
    tmp_path: Path, method: str, activation_checkpointing: bool = False, precision: str = ""
) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, __file__, method, str(tmp_path)]
    if activation_checkpointing:
        command.append("--activation-checkpointing")
    if precision:
        command += ["--precision", precision]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "activation_checkpointing"), [("ldifs", True), ("l2sp", False)])
def test_two_process_fsdp_matches_one_process(tmp_path, method, activation_checkpointing):
    ranks = _run_two_processes(tmp_path, method, activation_checkpointing)
    assert ranks[0]["parameter_types"] == ["DTensor"]  # both encoders and the head sharded

    torch.set_num_threads(1)
    single = _module(method)
    _, losses = _fit(single, "auto", 1, 2 * PER_RANK_BATCH)
    # Each rank's loss is the mean over its half of the 1-process batch; LDIFS and CE are means
    # over samples and L2SP is the same on every rank, so the mean over ranks is the 1-process
    # loss. Steps after the first check gradients and AdamW; the second epoch ran from the
    # sharded checkpoint, so it checks weights and optimizer state survived the round trip.
    mean_over_ranks = [(a + b) / 2 for a, b in zip(*(r["losses"] for r in ranks), strict=True)]
    assert len(losses) == 2 * STEPS_PER_EPOCH
    assert mean_over_ranks == pytest.approx(losses, rel=1e-4, abs=1e-5)
    assert losses[-1] != pytest.approx(losses[0], rel=1e-3)  # training moved

    loaded = LDIFSModule.load_from_checkpoint(tmp_path / "full.ckpt")
    with torch.no_grad():
        expected = single(_probe_images())
        from_checkpoint = loaded(_probe_images())
    sharded = torch.tensor(ranks[0]["logits"])
    torch.testing.assert_close(sharded, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(from_checkpoint, sharded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        loaded.reference_encoder.state_dict(), single.reference_encoder.state_dict()
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_forgetting_callback_under_fsdp_matches_one_process(tmp_path, precision):
    # The callback extracts features with the sharded encoder (every rank runs the same number
    # of batches: each forward all-gathers) and measures the pre-trained baseline with the
    # sharded frozen copy; under bf16-mixed that copy is stored in bf16 (reference_dtype auto).
    ranks = _run_two_processes(tmp_path, "callback", precision=precision)
    # Still sharded after the callback's forwards (the root's own parameters included).
    assert ranks[0]["not_sharded"] == [] and ranks[0]["parameter_types"] == ["DTensor"]
    copy_dtype = "torch.bfloat16" if precision == "bf16-mixed" else "torch.float32"
    assert copy_dtype in ranks[0]["reference_dtypes"]

    torch.set_num_threads(1)
    single = _fit_with_callback(tmp_path / "single", precision, 1, "auto")
    mean_over_ranks = [(a + b) / 2 for a, b in zip(*(r["losses"] for r in ranks), strict=True)]
    tolerance = 1e-4 if precision == "32-true" else 2e-2  # bf16 matmuls on other batch shapes
    assert mean_over_ranks == pytest.approx(single["losses"], rel=tolerance, abs=tolerance)
    # Every rank logs the same numbers, and they are the 1-process run's: accuracies on the
    # same 32 test images (one image is 3.125 points), equal up to float rounding.
    assert ranks[0]["forgetting"] == ranks[1]["forgetting"]
    assert ranks[0]["forgetting"].keys() == single["forgetting"].keys()
    assert any(key.endswith("/lp_acc") for key in single["forgetting"])
    for key, value in single["forgetting"].items():
        if key.endswith(("_acc", "delta_lp", "delta_zs")):
            assert ranks[0]["forgetting"][key] == pytest.approx(value, abs=1e-3), key
    for metric in ("lp_acc", "zs_acc"):
        assert ranks[0]["baseline"]["shapes"][metric] == pytest.approx(
            single["baseline"]["shapes"][metric], abs=1e-3
        )


REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--model.init_args.model_name", "ldifs-tiny-vit",
    "--model.init_args.pretrained", "demo",
    "--data", "ldifs_lightning.data.FineTuneDataModule",
    "--data.init_args.dataset", "shapes",
    "--data.init_args.image_size", "32",
    "--data.init_args.batch_size", "8",
    "--data.init_args.max_train_samples", "32",
]  # fmt: skip


def test_scale_config_runs_on_cpu_with_a_tiny_model(tmp_path):
    """The ViT-L/14 config as shipped (FSDP2, bf16-mixed, activation checkpointing, LDIFS),
    with the tiny model, one CPU process (gloo) and one step instead of ViT-L on 4 GPUs."""
    command = [
        sys.executable, "-m", "ldifs_lightning", "fit",
        "--config", str(REPO / "configs/scale/vit_l14_fsdp.yaml"),
        *TINY,
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.strategy.init_args.data_parallel_size", "1",
        "--trainer.fast_dev_run", "1",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_config_keys_are_commented():
    lines = (REPO / "configs/scale/vit_l14_fsdp.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("class_path"):
            continue
        if stripped.endswith(":") and stripped in ("trainer:", "model:", "init_args:", "strategy:"):
            continue
        assert lines[index - 1].strip().startswith("#"), f"uncommented key: {stripped}"
        assert "default" in lines[index - 1] or "default" in lines[index - 2], stripped


def test_unsupported_strategies_fail_with_one_line():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, ModelParallelStrategy

    from ldifs_lightning.callbacks import WiSEFTCallback

    module = _module("ldifs")
    module.check_strategy(DDPStrategy())
    module.check_strategy(ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1))
    cases = [
        (module, FSDPStrategy(), [], "FSDP1"),
        (module, ModelParallelStrategy(tensor_parallel_size=2), [], "tensor_parallel_size=2"),
        (_module("ldifs", head_init="linear_probe"), None, [], "LP-FT"),
        (module, None, [WiSEFTCallback(alphas=[0.5])], "WiSEFTCallback"),
    ]
    for candidate, strategy, callbacks, expected in cases:
        strategy = strategy or ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
        with pytest.raises(ValueError, match=expected) as error:
            candidate.check_strategy(strategy, callbacks)
        assert "\n" not in str(error.value)
        assert "ModelParallelStrategy" in str(error.value) or "ddp" in str(error.value)


def test_flyp_is_refused_under_fsdp2():
    from lightning.pytorch.strategies import ModelParallelStrategy

    module = FLYPModule(CLASSES, model_name="ldifs-tiny-vit", pretrained=None)
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    with pytest.raises(ValueError, match="FLYPModule is not supported under ModelParallel"):
        module.check_strategy(strategy)


def test_shard_units_are_the_blocks():
    from ldifs_lightning.models.sharding import shard_units

    vit = _module("ldifs").image_encoder
    names = [name for name, _ in shard_units(vit)]
    assert names == [f"transformer.resblocks.{i}" for i in range(len(vit.transformer.resblocks))]
    rn = LDIFSModule(CLASSES, model_name="ldifs-tiny-rn", pretrained=None).image_encoder
    assert [name for name, _ in shard_units(rn)] == ["layer1", "layer2", "layer3", "layer4"]
    assert shard_units(torch.nn.Linear(2, 2)) == []


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    images, labels = _dataset().tensors
    results = []
    for checkpointing in (False, True):
        module = _module("ldifs", activation_checkpointing=checkpointing)
        loss = module.training_step((images[:6], labels[:6]), 0)
        loss.backward()
        gradients = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        results.append((loss.detach(), gradients))
    assert module.image_encoder.transformer.grad_checkpointing
    assert not module.reference_encoder.transformer.grad_checkpointing
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    assert results[1][1].keys() == results[0][1].keys()
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-6, atol=1e-7)


def test_activation_checkpointing_on_a_resnet_fails_with_one_line():
    with pytest.raises(ValueError, match="ModifiedResNet image tower of 'ldifs-tiny-rn'"):
        LDIFSModule(
            CLASSES, model_name="ldifs-tiny-rn", pretrained=None, activation_checkpointing=True
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=[*sorted(METHODS), "callback"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--precision", default="32-true")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    if arguments.method == "callback":
        _callback_worker(arguments.out, arguments.precision)
    else:
        _worker(arguments.method, arguments.out, arguments.activation_checkpointing)
