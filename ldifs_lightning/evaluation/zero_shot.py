"""Zero-shot classification from image features and text class embeddings: accuracy and logits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["zero_shot_accuracy", "zero_shot_logits"]


def zero_shot_accuracy(features: Tensor, labels: Tensor, class_embeddings: Tensor) -> float:
    """Fraction of rows whose most cosine-similar class embedding is their label.

    Both inputs are l2-normalised here (a no-op when they already are), so the prediction is
    ``argmax(normalise(features) @ normalise(class_embeddings).T)``; a positive logit scale would
    not change it. The computation runs on ``features``' device.

    Args:
        features: ``[N, D]`` image features.
        labels: ``[N]`` integer labels in ``0..K - 1``.
        class_embeddings: ``[K, D]`` one text embedding per class (e.g. averaged over templates).

    Returns:
        Accuracy in ``[0, 1]``.

    Example:
        >>> classes = torch.eye(3)
        >>> zero_shot_accuracy(torch.tensor([[2.0, 0.1, 0.0], [0.0, 0.0, 1.0]]),
        ...                    torch.tensor([0, 1]), classes)
        0.5
    """
    _check_inputs(features, class_embeddings)
    _check_labels(labels, features.shape[0], class_embeddings.shape[0])
    similarities = _cosine_similarities(features, class_embeddings)
    predictions = similarities.argmax(dim=1)
    correct = predictions == labels.to(device=predictions.device)
    return correct.to(torch.float64).mean().item()


def zero_shot_logits(features: Tensor, class_embeddings: Tensor, scale: float) -> Tensor:
    """CLIP's zero-shot logits ``scale * cosine(features, class_embeddings)``, ``[N, K]``.

    The cosine similarities are the ones :func:`zero_shot_accuracy` takes the argmax of; ``scale``
    is the CLIP model's ``logit_scale.exp()`` (100 for OpenAI's ViT-B/32), which sets how
    confident the softmax over them is (what calibration measures). Computed in at least float32
    on ``features``' device.

    Example:
        >>> zero_shot_logits(torch.tensor([[3.0, 4.0]]), torch.eye(2), scale=10.0)
        tensor([[6., 8.]])
    """
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale={scale} must be a positive finite number (logit_scale.exp())")
    _check_inputs(features, class_embeddings)
    return scale * _cosine_similarities(features, class_embeddings)


def _check_inputs(features: Tensor, class_embeddings: Tensor) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {tuple(features.shape)}")
    if class_embeddings.ndim != 2:
        raise ValueError(
            f"class_embeddings must be 2-D [K, D], got shape {tuple(class_embeddings.shape)}"
        )
    if class_embeddings.shape[1] != features.shape[1]:
        raise ValueError(
            f"class_embeddings has dimension {class_embeddings.shape[1]}; it must match the "
            f"features' dimension {features.shape[1]}"
        )
    if class_embeddings.shape[0] == 0:
        raise ValueError("class_embeddings has 0 classes; need at least 1")
    if features.shape[0] == 0:
        raise ValueError("features is empty; need at least one row")


def _check_labels(labels: Tensor, num_rows: int, num_classes: int) -> None:
    if labels.ndim != 1 or labels.shape[0] != num_rows:
        raise ValueError(
            f"labels must have shape [{num_rows}] to match features, got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"labels contains {bad}; allowed labels are 0..{num_classes - 1}")


def _cosine_similarities(features: Tensor, class_embeddings: Tensor) -> Tensor:
    dtype = torch.promote_types(features.dtype, torch.float32)
    image = F.normalize(features.detach().to(dtype), dim=1)
    text = F.normalize(class_embeddings.detach().to(device=image.device, dtype=dtype), dim=1)
    return image @ text.t()
