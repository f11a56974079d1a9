"""What the lighter frozen copy saves: checkpoint sizes, its parameter bytes, and its LDIFS value.

For each model (the shipped tiny ViT, ``pretrained: demo``; ViT-B/32 with random weights written
to a file so that they are rebuildable) the script

* fits LDIFS and FT for one step on random images and saves a checkpoint with the frozen copy
  (``checkpoint_reference: always``, the behaviour before) and without it (``auto``);
* counts the frozen copy's parameter bytes in float32 and as ``reference_dtype: auto`` stores it
  under ``bf16-mixed`` (matrices and kernels in bfloat16, 1-d parameters in float32);
* times building the module and, within it, the sha256 of the copy (once each, for scale);
* computes the LDIFS value of one batch under CPU bf16 autocast with the float32 copy and with the
  bfloat16 copy (the trainable encoder is the pre-trained one plus noise, so the value is not 0),
  and for context with every parameter in bfloat16 and without autocast.

    python benchmarks/reference_copy.py                 # tiny ViT and ViT-B/32 (about a minute)
    python benchmarks/reference_copy.py --quick         # tiny ViT only
    python benchmarks/reference_copy.py --out FILE.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import open_clip
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.models import FeatureTaps, create_clip
from ldifs_lightning.modules import CLIPFineTuner, FineTuneModule, LDIFSModule
from ldifs_lightning.regularizers import FrozenCopy, ldifs_distance
from ldifs_lightning.regularizers.frozen_copy import (
    CheckpointReference,
    cast_for_autocast,
    weights_sha256,
)
from ldifs_lightning.regularizers.ldifs import attention_fast_path_disabled

CLASSNAMES = ["cat", "dog", "bird"]


def _parameter_bytes(encoder: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in encoder.parameters())


def _store_frozen_copies(module: CLIPFineTuner, setting: CheckpointReference) -> None:
    """Make the module's next checkpoints hold (``always``) or leave out (``auto``) its copies."""
    for frozen in module.modules():
        if isinstance(frozen, FrozenCopy):
            frozen.checkpoint = setting


def _checkpoint_bytes(module: CLIPFineTuner, scratch: Path, batch: int) -> dict[str, int]:
    """Fit one step, then save the same state with and without the frozen copy."""
    size = module.image_size
    images = torch.randn(batch, 3, size, size)
    loader = DataLoader(TensorDataset(images, torch.arange(batch) % len(CLASSNAMES)), batch)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=scratch,
    )
    trainer.fit(module, loader)
    sizes = {}
    for setting, label in [("always", "before"), ("auto", "after")]:
        _store_frozen_copies(module, setting)
        path = scratch / f"{label}.ckpt"
        trainer.save_checkpoint(path)
        sizes[label] = path.stat().st_size
        path.unlink()
    return sizes


def _ldifs_values(encoder: torch.nn.Module, images: torch.Tensor) -> dict[str, float]:
    """LDIFS of a perturbed encoder against the copy stored three ways, under bf16 autocast."""
    reference = copy.deepcopy(encoder).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(1)
    trainable = copy.deepcopy(reference)
    with torch.no_grad():
        for p in trainable.parameters():
            noise = torch.randn(p.shape, generator=generator)
            p.add_(1e-2 * p.detach().std().nan_to_num(0.0) * noise)
    low = copy.deepcopy(reference)
    cast_for_autocast(low, torch.bfloat16)
    everything = copy.deepcopy(reference).to(torch.bfloat16)
    names = FeatureTaps(trainable, None).names

    def taps(model: torch.nn.Module) -> list[torch.Tensor]:
        with FeatureTaps(model, names) as recorded:
            model(images)
        return recorded.features()

    values = {}
    # Without the attention fast path, as the LDIFS regulariser runs its frozen copy.
    with torch.no_grad(), attention_fast_path_disabled():
        values["float32_no_autocast"] = ldifs_distance(taps(trainable), taps(reference)).item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = taps(trainable)
            for label, copy_ in [
                ("bf16_mixed_float32_copy", reference),
                ("bf16_mixed_bf16_copy", low),
                ("bf16_mixed_all_parameters_bf16", everything),
            ]:
                values[label] = ldifs_distance(features, taps(copy_)).item()
    base = values["bf16_mixed_float32_copy"]
    values["abs_diff_bf16_copy"] = abs(values["bf16_mixed_bf16_copy"] - base)
    values["rel_diff_bf16_copy"] = values["abs_diff_bf16_copy"] / base
    values["rel_diff_all_parameters_bf16"] = (
        abs(values["bf16_mixed_all_parameters_bf16"] - base) / base
    )
    values["rel_diff_autocast_itself"] = abs(base - values["float32_no_autocast"]) / base
    return values


def _measure(
    label: str, model_name: str, pretrained: str, batch: int, scratch: Path
) -> dict[str, object]:
    print(f"{label}: building modules", flush=True)
    result: dict[str, object] = {"model_name": model_name, "pretrained_kind": label}
    start = time.perf_counter()
    ldifs = LDIFSModule(CLASSNAMES, model_name=model_name, pretrained=pretrained, lr=1e-5)
    init_seconds = time.perf_counter() - start
    encoder = ldifs.reference_encoder
    start = time.perf_counter()
    weights_sha256(encoder)
    hash_seconds = time.perf_counter() - start
    # The hash is taken once, in __init__; one measurement each, for scale only.
    result["init_seconds"] = {"module": init_seconds, "of_which_sha256": hash_seconds}
    low = copy.deepcopy(encoder)
    cast_for_autocast(low, torch.bfloat16)
    fp32_bytes, low_bytes = _parameter_bytes(encoder), _parameter_bytes(low)
    result["frozen_copy_parameter_bytes"] = {
        "float32": fp32_bytes,
        "bf16_mixed": low_bytes,
        "saved": fp32_bytes - low_bytes,
        "ratio": low_bytes / fp32_bytes,
    }
    size = ldifs.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    print(f"{label}: LDIFS values", flush=True)
    result["ldifs_value"] = _ldifs_values(encoder, images)
    del low
    print(f"{label}: checkpoints", flush=True)
    sizes = {"ldifs": _checkpoint_bytes(ldifs, scratch, batch)}
    del ldifs
    ft = FineTuneModule(CLASSNAMES, model_name=model_name, pretrained=pretrained, lr=1e-5)
    sizes["ft"] = _checkpoint_bytes(ft, scratch, batch)
    sizes["ldifs_after_over_before"] = sizes["ldifs"]["after"] / sizes["ldifs"]["before"]
    sizes["ldifs_after_over_ft"] = sizes["ldifs"]["after"] / sizes["ft"]["after"]
    sizes["ldifs_before_over_ft"] = sizes["ldifs"]["before"] / sizes["ft"]["before"]
    result["checkpoint_bytes"] = sizes
    return result


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main() -> None:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny ViT only")
    parser.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--out", default="benchmarks/results/reference_copy.json")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error(f"--batch {args.batch}: must be a positive number of images")

    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        results.append(_measure("demo", "ldifs-tiny-vit", "demo", args.batch, scratch))
        if not args.quick:
            weights = scratch / "vit-b-32-random.pt"
            torch.save(create_clip("ViT-B-32").state_dict(), weights)
            results.append(
                _measure("random init, from a file", "ViT-B-32", str(weights), args.batch, scratch)
            )
    report = {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "machine": platform.machine(),
        "batch": args.batch,
        "models": results,
    }
    for entry in results:
        sizes, params = entry["checkpoint_bytes"], entry["frozen_copy_parameter_bytes"]
        value = entry["ldifs_value"]
        print(
            f"{entry['model_name']}: checkpoint LDIFS {sizes['ldifs']['before'] / 1e6:.1f} -> "
            f"{sizes['ldifs']['after'] / 1e6:.1f} MB, FT {sizes['ft']['after'] / 1e6:.1f} MB; "
            f"frozen copy {params['float32'] / 1e6:.1f} -> {params['bf16_mixed'] / 1e6:.1f} MB; "
            f"LDIFS rel. diff bf16 copy {value['rel_diff_bf16_copy']:.2e}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
