"""Concept forgetting as plain functions: (encoder, suite, device) -> accuracies and deltas.

For a foreign dataset d: ``A_LP`` is the test accuracy of a linear probe fitted on the encoder's
l2-normalised train features, ``A_ZS`` the zero-shot accuracy against the *pre-trained* text
tower's class embeddings. ``delta = A(fine-tuned) - A(pre-trained)``; negative means forgetting.
Accuracies and deltas are in percentage points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ldifs_lightning.evaluation.feature_cache import FeatureCache, cache_key, fingerprint_module
from ldifs_lightning.evaluation.features import extract_features
from ldifs_lightning.evaluation.linear_probe import linear_probe_accuracy
from ldifs_lightning.evaluation.suite import ForeignDataset
from ldifs_lightning.evaluation.zero_shot import zero_shot_accuracy

Metric = Literal["linear_probe", "zero_shot"]
METRICS: tuple[str, ...] = ("linear_probe", "zero_shot")
_KEYS = {"linear_probe": "lp_acc", "zero_shot": "zs_acc"}


def check_metrics(metrics: Sequence[str]) -> None:
    """Raise a one-line error unless ``metrics`` is a non-empty subset of the known metrics."""
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise ValueError(f"metrics={list(metrics)} must be a non-empty subset of {list(METRICS)}")


def broadcast_from_rank_zero(value: object) -> object:
    """Rank zero's ``value`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_ranks_agree(flag: bool) -> bool:
    """True only if ``flag`` is true on every rank (``flag`` itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    box = [None] * dist.get_world_size()
    dist.all_gather_object(box, bool(flag))
    return all(box)


def _features(
    encoder: nn.Module,
    dataset: ForeignDataset,
    split: str,
    device: torch.device | str,
    batch_size: int,
    autocast_dtype: torch.dtype | None,
    num_workers: int,
    cache: FeatureCache | None,
    weights: str | None,
) -> tuple[Tensor, Tensor]:
    def compute() -> dict[str, Tensor]:
        features, labels = extract_features(
            encoder,
            getattr(dataset, split),
            batch_size=batch_size,
            device=device,
            autocast_dtype=autocast_dtype,
            num_workers=num_workers,
        )
        return {"features": features.cpu(), "labels": labels.cpu()}

    if cache is None or weights is None or split not in dataset.identity:
        entry = compute()
    else:
        key = cache_key(
            weights=weights,
            autocast=str(autocast_dtype),
            **dataset.identity[split],
        )
        entry = cache.get(key)
        # Extraction has collectives: under DDP every rank must take the same branch, so a miss
        # on any rank (node-local cache, corrupt entry) means every rank extracts.
        if not all_ranks_agree(entry is not None):
            entry = compute()
            cache.put(key, entry)
    return entry["features"].to(device), entry["labels"].to(device)


def encoder_accuracies(
    encoder: nn.Module,
    suite: Sequence[ForeignDataset],
    *,
    class_embeddings: Mapping[str, Tensor] | None = None,
    metrics: Sequence[Metric] = METRICS,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    cache: FeatureCache | None = None,
    probe_seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Accuracies (in %) of one encoder on every dataset of a suite.

    Under DDP every rank extracts its shard of every dataset and takes part in every collective;
    the probe is fitted on rank zero and its result broadcast, so all ranks return the same dict.

    Args:
        encoder: Image encoder returning one embedding per image.
        suite: Foreign datasets.
        class_embeddings: Per dataset name, ``[K, D]`` unit-norm text embeddings (for zero-shot).
        metrics: Which of ``linear_probe`` and ``zero_shot`` to compute.
        device: Where features are extracted and the probe is fitted.
        batch_size: Images per forward pass.
        autocast_dtype: Autocast dtype for extraction (e.g. ``torch.bfloat16``), or None.
        num_workers: DataLoader workers for extraction.
        cache: Feature cache; only used for encoders whose weights never change (pre-trained).
        probe_seed: Seed of the probe's held-out split.

    Returns:
        ``{dataset: {"lp_acc": float, "zs_acc": float}}`` with the requested metrics.
    """
    check_metrics(metrics)
    if "zero_shot" in metrics:
        missing = [
            d.name for d in suite if class_embeddings is None or d.name not in class_embeddings
        ]
        if missing:
            raise ValueError(
                f"zero_shot needs class embeddings for {missing}: give the datasets class names "
                "and templates and a text tower, or use metrics=['linear_probe']"
            )
    weights = fingerprint_module(encoder) if cache is not None else None
    results: dict[str, dict[str, float]] = {}
    for dataset in suite:
        args = (device, batch_size, autocast_dtype, num_workers, cache, weights)
        test_x, test_y = _features(encoder, dataset, "test", *args)
        row: dict[str, float] = {}
        if "linear_probe" in metrics:
            train_x, train_y = _features(encoder, dataset, "train", *args)
            outcome: tuple[float | None, str | None] = (None, None)
            if not dist.is_initialized() or dist.get_rank() == 0:
                num_classes = max(int(train_y.max()), int(test_y.max())) + 1
                if dataset.classnames:
                    num_classes = len(dataset.classnames)
                try:
                    accuracy, _ = linear_probe_accuracy(
                        train_x, train_y, test_x, test_y, num_classes=num_classes, seed=probe_seed
                    )
                    outcome = (accuracy, None)
                except ValueError as error:  # shared, so no rank waits forever for rank zero
                    outcome = (None, f"{dataset.name}: {error}")
            accuracy, failure = broadcast_from_rank_zero(outcome)
            if failure is not None:
                raise ValueError(failure)
            row["lp_acc"] = 100.0 * float(accuracy)
        if "zero_shot" in metrics:
            embeddings = class_embeddings[dataset.name].to(device=test_x.device, dtype=test_x.dtype)
            row["zs_acc"] = 100.0 * zero_shot_accuracy(test_x, test_y, embeddings)
        results[dataset.name] = row
    return results


def forgetting_deltas(
    baseline: Mapping[str, Mapping[str, float]], current: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Flat metrics: per dataset accuracies and deltas, and the suite means of the deltas.

    Keys: ``<dataset>/lp_acc``, ``<dataset>/delta_lp``, ``<dataset>/zs_acc``,
    ``<dataset>/delta_zs``, ``mean_delta_lp``, ``mean_delta_zs`` (deltas only for the metrics
    present in both).

    Example:
        >>> forgetting_deltas({"a": {"lp_acc": 80.0}}, {"a": {"lp_acc": 70.0}})
        {'a/lp_acc': 70.0, 'a/delta_lp': -10.0, 'mean_delta_lp': -10.0}
    """
    flat: dict[str, float] = {}
    sums: dict[str, list[float]] = {}
    for name, row in current.items():
        for key, value in row.items():
            flat[f"{name}/{key}"] = value
            if key in baseline.get(name, {}):
                delta_key = "delta_" + key.removesuffix("_acc")
                delta = value - baseline[name][key]
                flat[f"{name}/{delta_key}"] = delta
                sums.setdefault(delta_key, []).append(delta)
    for delta_key, deltas in sums.items():
        flat[f"mean_{delta_key}"] = sum(deltas) / len(deltas)
    return flat


def measure_forgetting(
    pretrained_encoder: nn.Module,
    finetuned_encoder: nn.Module,
    suite: Sequence[ForeignDataset],
    *,
    class_embeddings: Mapping[str, Tensor] | None = None,
    metrics: Sequence[Metric] = ("linear_probe",),
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
    **kwargs: object,
) -> dict[str, float]:
    """Per-dataset and mean forgetting of ``finetuned_encoder`` relative to ``pretrained_encoder``.

    The pre-trained encoder's features go through ``cache`` when one is given (they never change);
    the fine-tuned encoder's never do. Extra keyword arguments go to :func:`encoder_accuracies`.

    Example:
        >>> deltas = measure_forgetting(before.visual, after.visual, suite)  # doctest: +SKIP
        >>> deltas["mean_delta_lp"]  # doctest: +SKIP
        -4.2
    """
    common = dict(class_embeddings=class_embeddings, metrics=metrics, device=device, **kwargs)
    baseline = encoder_accuracies(pretrained_encoder, suite, cache=cache, **common)
    current = encoder_accuracies(finetuned_encoder, suite, **common)
    return forgetting_deltas(baseline, current)
