"""Task accuracy of an (encoder, linear head) pair on a DataLoader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


@torch.inference_mode()
def classification_accuracy(
    encoder: nn.Module,
    head: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> float:
    """Accuracy in % of ``head(normalize(encoder(images)))`` over ``(images, labels)`` batches.

    Example:
        >>> enc, head = nn.Flatten(), nn.Linear(4, 2)
        >>> 0.0 <= classification_accuracy(enc, head, [(torch.randn(3, 4), torch.zeros(3))]) <= 100
        True
    """
    was_training = encoder.training
    encoder.eval()
    correct = total = 0
    try:
        for images, labels in batches:
            logits = head(F.normalize(encoder(images.to(device)).float(), dim=-1))
            correct += int((logits.argmax(dim=-1).cpu() == labels.cpu()).sum())
            total += len(labels)
    finally:
        encoder.train(was_training)
    if total == 0:
        raise ValueError("classification_accuracy got no samples")
    return 100.0 * correct / total
