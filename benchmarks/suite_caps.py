"""What the forgetting suite's sample caps do to A_LP / A_ZS, and what monitoring costs per epoch.

**Caps.** The shipped tiny CLIP (``ldifs-tiny-vit``, pretrained ``demo``) is fine-tuned as
``configs/demo/ft.yaml`` does (plain FT on ``textures``; its model and data ``init_args``,
``--epochs`` epochs). Both encoders are then measured on ``digits``, ``fashion`` and ``shapes`` at
each cap (max_train_samples, max_test_samples) in (2000, 1000) (the paper configs), (500, 200),
(100, 100) and (None, None) (whole splits), for several seeds: the seed picks the capped subsets
(``capped_indices``, as ``registry_suite`` does) and the probe's held-out split, as the callback's
``seed`` does. Features of the whole splits are extracted once per encoder; a capped split's
features are the rows of its indices (the encoders run per image in eval mode).

**Monitoring cost.** Forward seconds per image are timed on this CPU for the tiny model (32 px)
and for ViT-B/32 (224 px, random init: timing only), and the linear probe's fit on 2000 x 512
synthetic features with 10 and 100 classes. From them, per paper data config
(``configs/data/*.yaml``: task, suite, caps, val split), an estimate of one epoch's
training (``train images x 3 forwards`` for FT, ``x 4`` for LDIFS's extra frozen forward, plus a
forward per validation image), of the callback's per-epoch work (a forward per capped suite
image, the pre-trained features coming from the cache, plus one probe per dataset) and of
``final_full_size``'s end-of-fit work (a forward per whole-split image, the final encoder only).
These ViT-B/32 numbers are **estimates from per-image CPU timings**, not measured epochs.

    OMP_NUM_THREADS=1 python benchmarks/suite_caps.py           # a few minutes on 2 cores
    OMP_NUM_THREADS=1 python benchmarks/suite_caps.py --quick   # 1 FT epoch, 1 seed, no ViT-B/32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml

from ldifs_lightning.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
FT_CONFIG = REPO / "configs" / "demo" / "ft.yaml"
DATA_CONFIGS = REPO / "configs" / "data"
DOMAINS = ("digits", "fashion", "shapes")
#: (max_train_samples, max_test_samples): the paper configs', two smaller caps, whole splits.
CAPS: tuple[tuple[int | None, int | None], ...] = (
    (2000, 1000),
    (500, 200),
    (100, 100),
    (None, None),
)
#: Official (train, test) split sizes, from each registry entry's split source (docs/datasets.md):
#: RESISC45 and SUN397 with their official list files; EuroSAT's seeded-v1 split (10 % test).
SPLIT_SIZES: dict[str, tuple[int, int]] = {
    "cars": (8_144, 8_041),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
    "dtd": (1_880, 1_880),
    "eurosat": (24_300, 2_700),
    "gtsrb": (26_640, 12_630),
    "imagenet": (1_281_167, 50_000),
    "mnist": (60_000, 10_000),
    "resisc45": (18_900, 6_300),
    "stl10": (5_000, 8_000),
    "sun397": (19_850, 19_850),
    "svhn": (73_257, 26_032),
}
ESTIMATE_NOTE = (
    "ViT-B/32 numbers are estimates from per-image CPU forward timings (random init, one "
    "thread), not measured epochs: training = images x 3 forwards (FT) or x 4 (LDIFS, frozen "
    "copy), validation and monitoring = one forward per image, plus one linear probe per suite "
    "dataset; the callback's pre-trained features come from the cache."
)


# --------------------------------------------------------------------------- caps
def fine_tune(epochs: int) -> tuple[torch.nn.Module, float]:
    """The tiny CLIP's image encoder after ``epochs`` epochs of configs/demo/ft.yaml's FT."""
    from lightning.pytorch import Trainer, seed_everything

    from ldifs_lightning import LDIFSModule
    from ldifs_lightning.data import FineTuneDataModule

    config = yaml.safe_load(FT_CONFIG.read_text())
    seed_everything(config.get("seed_everything", 0), verbose=False)
    data = FineTuneDataModule(**config["data"]["init_args"])
    module = LDIFSModule(data.classnames, data.templates, **config["model"]["init_args"])
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        gradient_clip_val=config["trainer"].get("gradient_clip_val"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=REPO / "runs" / "suite_caps",
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return module.image_encoder.eval(), time.perf_counter() - start


def measure_caps(epochs: int, seeds: Sequence[int]) -> dict[str, Any]:
    """A_LP, A_ZS and deltas of the pre-trained and the fine-tuned tiny encoder at every cap."""
    from ldifs_lightning.evaluation.features import extract_features
    from ldifs_lightning.evaluation.linear_probe import linear_probe_accuracy
    from ldifs_lightning.evaluation.suite import capped_indices, registry_suite
    from ldifs_lightning.evaluation.zero_shot import zero_shot_accuracy
    from ldifs_lightning.models import create_clip, get_tokenizer, zero_shot_class_embeddings

    finetuned, finetune_s = fine_tune(epochs)
    clip = create_clip("ldifs-tiny-vit", "demo").eval()
    encoders = {"pretrained": clip.visual, "finetuned": finetuned}
    domains: dict[str, Any] = {}
    probe_seconds: list[float] = []
    for name in DOMAINS:
        (member,) = registry_suite([name], "data", 32, None, None)
        classes = zero_shot_class_embeddings(
            clip, get_tokenizer("ldifs-tiny-vit"), member.classnames, member.templates
        )
        features = {
            which: {
                split: extract_features(encoder, getattr(member, split), batch_size=256)
                for split in ("train", "test")
            }
            for which, encoder in encoders.items()
        }
        sizes = {split: len(features["pretrained"][split][1]) for split in ("train", "test")}
        rows = []
        for max_train, max_test in CAPS:
            per_seed: dict[str, list[float]] = {}
            for seed in seeds:
                train_idx = capped_indices(sizes["train"], max_train, seed)
                test_idx = capped_indices(sizes["test"], max_test, seed)
                for which in encoders:
                    train_x, train_y = features[which]["train"]
                    test_x, test_y = features[which]["test"]
                    start = time.perf_counter()
                    lp, _ = linear_probe_accuracy(
                        train_x[train_idx],
                        train_y[train_idx],
                        test_x[test_idx],
                        test_y[test_idx],
                        num_classes=len(member.classnames),
                        seed=seed,
                    )
                    probe_seconds.append(time.perf_counter() - start)
                    zs = zero_shot_accuracy(test_x[test_idx], test_y[test_idx], classes)
                    per_seed.setdefault(f"{which}_lp", []).append(100.0 * lp)
                    per_seed.setdefault(f"{which}_zs", []).append(100.0 * zs)
            for short in ("lp", "zs"):
                per_seed[f"delta_{short}"] = [
                    after - before
                    for after, before in zip(
                        per_seed[f"finetuned_{short}"], per_seed[f"pretrained_{short}"], strict=True
                    )
                ]
            rows.append(
                {
                    "max_train_samples": max_train,
                    "max_test_samples": max_test,
                    "train_used": len(capped_indices(sizes["train"], max_train, 0)),
                    "test_used": len(capped_indices(sizes["test"], max_test, 0)),
                    "per_seed": per_seed,
                    "mean": {key: statistics.fmean(v) for key, v in per_seed.items()},
                    "std": {
                        key: statistics.pstdev(v) if len(v) > 1 else 0.0
                        for key, v in per_seed.items()
                    },
                }
            )
        domains[name] = {"train_size": sizes["train"], "test_size": sizes["test"], "caps": rows}
    return {
        "model": "ldifs-tiny-vit",
        "pretrained": "demo",
        "finetune": {
            "config": str(FT_CONFIG.relative_to(REPO)),
            "task": "textures",
            "epochs": epochs,
            "seconds": finetune_s,
        },
        "seeds": list(seeds),
        "settings": [list(cap) for cap in CAPS],
        "domains": domains,
        "probe_s_median": statistics.median(probe_seconds),
    }


# --------------------------------------------------------------------------- monitoring cost
def forward_s_per_image(model_name: str, batch_size: int, repeats: int) -> float:
    """Median seconds per image of the image encoder's forward (inference mode, random init)."""
    from ldifs_lightning.models import create_clip, image_size_of

    encoder = create_clip(model_name, None).visual.eval()
    size = image_size_of(encoder)
    images = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        encoder(images[:2])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            encoder(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch_size


def probe_s(num_classes: int, samples: int = 2000, dim: int = 512) -> float:
    """Seconds of one linear-probe fit (with its l2 search) on synthetic clustered features."""
    from ldifs_lightning.evaluation.linear_probe import linear_probe_accuracy

    generator = torch.Generator().manual_seed(0)
    means = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=generator), dim=1)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        noisy = means[labels] + 0.05 * torch.randn(n, dim, generator=generator)
        return torch.nn.functional.normalize(noisy, dim=1), labels

    train_x, train_y = draw(samples)
    test_x, test_y = draw(samples // 2)
    start = time.perf_counter()
    linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes=num_classes, seed=0)
    return time.perf_counter() - start


def estimated_probe_s(num_classes: int, measured: dict[int, float]) -> float:
    """Probe seconds for ``num_classes``: the 10-class time up to 10 classes, else linear in the
    class count through the 10- and 100-class times (an estimate)."""
    low, high = measured[10], measured[100]
    if num_classes <= 10:
        return low
    return low + (high - low) * (num_classes - 10) / 90


def config_rows(forward_s: float, probes: dict[int, float]) -> list[dict[str, Any]]:
    """Per paper data config: training, monitoring and end-of-fit costs from per-image costs."""
    from ldifs_lightning.data import get_dataset_info

    rows = []
    for path in sorted(DATA_CONFIGS.glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        data = config["data"]["init_args"]
        task = data["dataset"]
        if task not in SPLIT_SIZES:  # folder.yaml: the user's own images
            continue
        (callback,) = [
            c["init_args"]
            for c in config["trainer"]["callbacks"]
            if c["class_path"].endswith("ConceptForgettingCallback")
        ]
        official_train = SPLIT_SIZES[task][0]
        val = min(round(data.get("val_fraction", 0.1) * official_train), data["max_val_samples"])
        train = official_train - val
        cap_train, cap_test = callback["max_train_samples"], callback["max_test_samples"]
        suite = list(callback["suite"])
        monitor_images = sum(
            min(cap_train or SPLIT_SIZES[d][0], SPLIT_SIZES[d][0])
            + min(cap_test or SPLIT_SIZES[d][1], SPLIT_SIZES[d][1])
            for d in suite
        )
        full_images = sum(sum(SPLIT_SIZES[d]) for d in suite)
        probe_total = sum(
            estimated_probe_s(len(get_dataset_info(d).classnames), probes) for d in suite
        )
        epoch_ft = (3 * train + val) * forward_s
        epoch_ldifs = (4 * train + val) * forward_s
        monitor = monitor_images * forward_s + probe_total
        rows.append(
            {
                "config": str(path.relative_to(REPO)),
                "task": task,
                "max_epochs": config["trainer"].get("max_epochs"),
                "train_images": train,
                "val_images": val,
                "suite": suite,
                "max_train_samples": cap_train,
                "max_test_samples": cap_test,
                "monitor_images": monitor_images,
                "monitor_probe_s": probe_total,
                "epoch_s_ft": epoch_ft,
                "epoch_s_ldifs": epoch_ldifs,
                "monitor_s": monitor,
                "monitor_share_of_ldifs_epoch": monitor / epoch_ldifs,
                "monitor_share_of_ft_epoch": monitor / epoch_ft,
                "final_full_images": full_images,
                "final_full_forward_s": full_images * forward_s,
            }
        )
    return rows


def monitoring_cost(vit_b32: bool) -> dict[str, Any]:
    forward = {"ldifs-tiny-vit": forward_s_per_image("ldifs-tiny-vit", 256, 5)}
    batches = {"ldifs-tiny-vit": 256}
    if vit_b32:
        forward["ViT-B-32"] = forward_s_per_image("ViT-B-32", 16, 3)
        batches["ViT-B-32"] = 16
    probes = {classes: probe_s(classes) for classes in (10, 100)}
    model = "ViT-B-32" if vit_b32 else "ldifs-tiny-vit"
    return {
        "note": ESTIMATE_NOTE,
        "estimate_model": model,
        "forward_s_per_image": forward,
        "forward_batch_size": batches,
        "probe_s": {str(k): v for k, v in probes.items()},
        "probe_setting": "2000 x 512 synthetic features, 10 or 100 classes; other class counts "
        "linear in the count through these two (10-class time below 10 classes)",
        "training_forwards_per_image": {"FT": 3, "LDIFS": 4},
        "split_sizes": {name: list(sizes) for name, sizes in SPLIT_SIZES.items()},
        "configs": config_rows(forward[model], probes),
    }


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="suite_caps.py", description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="FT epochs on textures (default 3)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cap (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 seed, no ViT-B/32")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/suite_caps.json")
    args = parser.parse_args(argv)
    for name in ("epochs", "seeds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.quick:
        args.epochs, args.seeds = 1, 1
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    caps = measure_caps(args.epochs, range(args.seeds))
    cost = monitoring_cost(vit_b32=not args.quick)
    report = {
        "benchmark": "suite_caps",
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "seconds": round(time.perf_counter() - start, 1),
        "caps": caps,
        "monitoring_cost": cost,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    sys.path.insert(0, str(REPO))
    from ldifs_lightning.reporting.caps_text import caps_table, monitoring_cost_table

    print(caps_table(report))
    print()
    print(monitoring_cost_table(report))
    print(f"\nwritten to {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
