"""Zero-shot classification accuracy from image features and text class embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["zero_shot_accuracy"]


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
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must have shape [{features.shape[0]}] to match features, "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if features.shape[0] == 0:
        raise ValueError("features is empty; need at least one row")
    num_classes = class_embeddings.shape[0]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"labels contains {bad}; allowed labels are 0..{num_classes - 1}")

    dtype = torch.promote_types(features.dtype, torch.float32)
    image = F.normalize(features.detach().to(dtype), dim=1)
    text = F.normalize(class_embeddings.detach().to(device=image.device, dtype=dtype), dim=1)
    predictions = (image @ text.t()).argmax(dim=1)
    correct = predictions == labels.to(device=predictions.device)
    return correct.to(torch.float64).mean().item()
