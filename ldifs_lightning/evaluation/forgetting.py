"""Concept forgetting as plain functions: (encoder, suite, device) -> accuracies and deltas.

For a foreign dataset d: ``A_LP`` is the test accuracy of a linear probe fitted on the encoder's
l2-normalised train features, ``A_ZS`` the zero-shot accuracy against the *pre-trained* text
tower's class embeddings. ``delta = A(fine-tuned) - A(pre-trained)``; negative means forgetting.
Next to each accuracy, the expected calibration error of the same predictions (``lp_ece`` from
the probe's logits, ``zs_ece`` from the zero-shot logits ``logit_scale.exp() * cosine``; see
:mod:`~ldifs_lightning.evaluation.calibration`); its delta is positive when calibration got worse.
Accuracies, ECEs and deltas are in percentage points.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from ldifs_lightning.distributed import (
    all_ranks_agree,
    broadcast_from_rank_zero,
    rank_and_world_size,
)
from ldifs_lightning.evaluation.calibration import expected_calibration_error
from ldifs_lightning.evaluation.feature_cache import FeatureCache, cache_key, fingerprint_module
from ldifs_lightning.evaluation.features import extract_features
from ldifs_lightning.evaluation.linear_probe import linear_probe_accuracy
from ldifs_lightning.evaluation.suite import ForeignDataset
from ldifs_lightning.evaluation.zero_shot import zero_shot_accuracy, zero_shot_logits
from ldifs_lightning.models import (
    create_clip,
    get_tokenizer,
    image_encoder_of,
    logit_scale_of,
    zero_shot_class_embeddings,
)
from ldifs_lightning.models.text_tower import TextTower

Metric = Literal["linear_probe", "zero_shot"]
METRICS: tuple[Metric, ...] = ("linear_probe", "zero_shot")
_KEYS = {"linear_probe": "lp_acc", "zero_shot": "zs_acc"}


def check_metrics(metrics: Sequence[str]) -> None:
    """Raise a one-line error unless ``metrics`` is a non-empty subset of the known metrics."""
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise ValueError(f"metrics={list(metrics)} must be a non-empty subset of {list(METRICS)}")


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
        cached = cache.get(key)
        # Extraction has collectives: under DDP every rank must take the same branch, so a miss
        # on any rank (node-local cache, corrupt entry) means every rank extracts.
        if all_ranks_agree(cached is not None) and cached is not None:
            entry = cached
        else:
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
    zero_shot_scale: float | None = None,
) -> dict[str, dict[str, float]]:
    """Accuracies and calibration errors (in %) of one encoder on every dataset of a suite.

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
        zero_shot_scale: The CLIP model's ``logit_scale.exp()``, which turns the zero-shot cosine
            similarities into logits for ``zs_ece``; None leaves ``zs_ece`` out (``zs_acc`` does
            not depend on it).

    Returns:
        ``{dataset: {"lp_acc", "lp_ece", "zs_acc", "zs_ece": float}}`` with the requested
        metrics (``lp_*`` for ``linear_probe``, ``zs_*`` for ``zero_shot``).
    """
    check_metrics(metrics)
    if zero_shot_scale is not None and not (0 < zero_shot_scale < float("inf")):
        raise ValueError(
            f"zero_shot_scale={zero_shot_scale} must be a positive finite number "
            "(the CLIP model's logit_scale.exp()) or None"
        )
    text_classes: Mapping[str, Tensor] = class_embeddings or {}
    if "zero_shot" in metrics:
        missing = [d.name for d in suite if d.name not in text_classes]
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
            outcome: tuple[tuple[float, float] | None, str | None] = (None, None)
            if rank_and_world_size()[0] == 0:
                num_classes = max(int(train_y.max()), int(test_y.max())) + 1
                if dataset.classnames:
                    num_classes = len(dataset.classnames)
                try:
                    accuracy, probe = linear_probe_accuracy(
                        train_x, train_y, test_x, test_y, num_classes=num_classes, seed=probe_seed
                    )
                    ece = expected_calibration_error(probe.logits(test_x.detach()), test_y)
                    outcome = ((accuracy, ece), None)
                except ValueError as error:  # shared, so no rank waits forever for rank zero
                    outcome = (None, f"{dataset.name}: {error}")
            probe_result, failure = broadcast_from_rank_zero(outcome)
            if probe_result is None:  # rank zero sent its failure instead
                raise ValueError(failure)
            row["lp_acc"] = 100.0 * float(probe_result[0])
            row["lp_ece"] = probe_result[1]
        if "zero_shot" in metrics:
            embeddings = text_classes[dataset.name].to(device=test_x.device, dtype=test_x.dtype)
            row["zs_acc"] = 100.0 * zero_shot_accuracy(test_x, test_y, embeddings)
            if zero_shot_scale is not None:
                logits = zero_shot_logits(test_x, embeddings, zero_shot_scale)
                row["zs_ece"] = expected_calibration_error(logits, test_y)
        results[dataset.name] = row
    return results


def forgetting_deltas(
    baseline: Mapping[str, Mapping[str, float]], current: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Flat metrics: per dataset accuracies, ECEs and deltas, and the suite means of the deltas.

    Keys: ``<dataset>/lp_acc``, ``<dataset>/delta_lp``, ``<dataset>/zs_acc``,
    ``<dataset>/delta_zs``, ``mean_delta_lp``, ``mean_delta_zs``; with calibration measured also
    ``<dataset>/lp_ece``, ``<dataset>/delta_lp_ece``, ``<dataset>/zs_ece``,
    ``<dataset>/delta_zs_ece``, ``mean_delta_lp_ece``, ``mean_delta_zs_ece`` (deltas only for
    the metrics present in both).

    Example:
        >>> forgetting_deltas({"a": {"lp_acc": 80.0}}, {"a": {"lp_acc": 70.0}})
        {'a/lp_acc': 70.0, 'a/delta_lp': -10.0, 'mean_delta_lp': -10.0}
        >>> forgetting_deltas({"a": {"zs_ece": 4.0}}, {"a": {"zs_ece": 9.0}})["mean_delta_zs_ece"]
        5.0
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


class PretrainedReference(NamedTuple):
    """What forgetting is measured against: the pre-trained image encoder and zero-shot classifier.

    Attributes:
        encoder: The pre-trained image encoder, in eval mode.
        class_embeddings: Per dataset, ``[K, D]`` unit-norm text embeddings (the zero-shot
            classifier), or None when zero-shot is not measured.
        zero_shot_scale: The model's ``logit_scale.exp()``: zero-shot logits are this times the
            cosine similarities (for ``zs_ece``).
    """

    encoder: nn.Module
    class_embeddings: dict[str, Tensor] | None
    zero_shot_scale: float


def pretrained_reference(
    model_name: str,
    pretrained: str | None,
    suite: Sequence[ForeignDataset] | Callable[[nn.Module], Sequence[ForeignDataset]],
    *,
    metrics: Sequence[Metric] = METRICS,
    device: torch.device | str = "cpu",
) -> PretrainedReference:
    """The pre-trained image encoder forgetting is measured against, and its zero-shot classifier.

    Builds the open_clip model ``model_name`` with weights ``pretrained`` on ``device``. With
    ``zero_shot`` in ``metrics`` its text tower encodes every dataset's class names and templates
    (``{dataset: [K, D]}`` unit-norm rows, the zero-shot classifier); the text tower is then
    dropped with the rest of the model. ``suite`` may be a function that builds the suite from
    the pre-trained image encoder (whose input size its transform needs).

    Returns:
        A :class:`PretrainedReference`: ``(image encoder in eval mode, class embeddings or None,
        logit_scale.exp())``.

    Example:
        >>> encoder, embeddings, scale = pretrained_reference(
        ...     "ldifs-tiny-vit", "demo", suite
        ... )  # doctest: +SKIP
        >>> embeddings["shapes"].shape  # doctest: +SKIP
        torch.Size([8, 32])
    """
    check_metrics(metrics)
    clip = create_clip(model_name, pretrained).to(device)
    image_encoder = image_encoder_of(clip)
    if callable(suite):
        suite = suite(image_encoder)
    embeddings = None
    if "zero_shot" in metrics:
        tokenizer = get_tokenizer(model_name)
        embeddings = {
            d.name: zero_shot_class_embeddings(clip, tokenizer, d.classnames, d.templates)
            for d in suite
        }
    scale = float(logit_scale_of(clip).detach().exp())
    return PretrainedReference(image_encoder.eval(), embeddings, scale)


def text_tower_classifier(
    text_tower: TextTower, suite: Sequence[ForeignDataset]
) -> tuple[dict[str, Tensor], float]:
    """The zero-shot classifier of a trained text tower (FLYP's): per dataset ``[K, D]``
    unit-norm class embeddings, and the tower's current ``logit_scale.exp()``.

    ``ConceptForgettingCallback`` and ``ldifs evaluate`` use it in place of the pre-trained
    text tower's classifier when the model trained its own.

    Example:
        >>> from ldifs_lightning.evaluation.suite import registry_suite
        >>> tower = TextTower(create_clip("ldifs-tiny-vit"), "ldifs-tiny-vit")
        >>> suite = registry_suite(["shapes"], "data", 32)
        >>> embeddings, scale = text_tower_classifier(tower, suite)
        >>> embeddings["shapes"].shape
        torch.Size([8, 32])
    """
    embeddings = {d.name: text_tower.class_embeddings(d.classnames, d.templates) for d in suite}
    return embeddings, float(text_tower.logit_scale.detach().exp())


def measure_forgetting(
    pretrained_encoder: nn.Module | None,
    finetuned_encoder: nn.Module,
    suite: Sequence[ForeignDataset],
    *,
    class_embeddings: Mapping[str, Tensor] | None = None,
    metrics: Sequence[Metric] = ("linear_probe",),
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    probe_seed: int = 0,
    zero_shot_scale: float | None = None,
) -> dict[str, float]:
    """Per-dataset and mean forgetting of ``finetuned_encoder`` relative to ``pretrained_encoder``.

    The pre-trained encoder's features go through ``cache`` when one is given (they never change);
    the fine-tuned encoder's never do. ``baseline`` (the pre-trained accuracies of an earlier
    call, :func:`encoder_accuracies`' result) replaces measuring ``pretrained_encoder``, which may
    then be None. ``class_embeddings``, ``metrics``, ``device``, ``batch_size``,
    ``autocast_dtype``, ``num_workers``, ``probe_seed`` and ``zero_shot_scale`` are
    :func:`encoder_accuracies`' for both measurements.

    Returns:
        :func:`forgetting_deltas` of the two measurements (in percentage points), calibration
        errors (``lp_ece``, ``zs_ece``) and their deltas included.

    Example:
        >>> deltas = measure_forgetting(before.visual, after.visual, suite)  # doctest: +SKIP
        >>> deltas["mean_delta_lp"]  # doctest: +SKIP
        -4.2
    """
    accuracies = functools.partial(
        encoder_accuracies,
        suite=suite,
        class_embeddings=class_embeddings,
        metrics=metrics,
        device=device,
        batch_size=batch_size,
        autocast_dtype=autocast_dtype,
        num_workers=num_workers,
        probe_seed=probe_seed,
        zero_shot_scale=zero_shot_scale,
    )
    if baseline is None:
        if pretrained_encoder is None:
            raise ValueError("measure_forgetting needs pretrained_encoder or a measured baseline")
        baseline = accuracies(pretrained_encoder, cache=cache)
    current = accuracies(finetuned_encoder)
    return forgetting_deltas(baseline, current)
