"""Expected calibration error (ECE) of a classifier's logits, in percent like the accuracies.

ECE is torchmetrics' top-label calibration error with the usual setting of the calibration
literature: ``norm="l1"`` over 15 equal-width confidence bins. The predicted probabilities are the
softmax of the logits, so their temperature matters: zero-shot logits are CLIP's scaled cosine
similarities (``logit_scale.exp() * cosine``), a linear probe's are its own class scores.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_calibration_error

__all__ = ["ECE_BINS", "expected_calibration_error"]

#: Equal-width confidence bins over [0, 1] (the usual default, e.g. Guo et al. 2017).
ECE_BINS = 15


def expected_calibration_error(logits: Tensor, labels: Tensor, *, n_bins: int = ECE_BINS) -> float:
    """ECE in % of ``softmax(logits)`` against ``labels``: 0 is perfectly calibrated.

    Each sample's confidence is its top softmax probability; samples are binned by confidence
    and ECE is the sum over bins of (fraction of samples in the bin) x |accuracy in the bin -
    mean confidence in the bin| (torchmetrics ``multiclass_calibration_error``, ``norm="l1"``).

    Args:
        logits: ``[N, K]`` class scores (before softmax).
        labels: ``[N]`` integer labels in ``0..K - 1``.
        n_bins: Number of equal-width confidence bins.

    Returns:
        ECE in percent, in ``[0, 100]``.

    Example:
        >>> # one sample, 90% confident and right: |1.0 - 0.9| = 10 points
        >>> logits = torch.tensor([[0.9, 0.1]]).log()
        >>> round(expected_calibration_error(logits, torch.tensor([0])), 4)
        10.0
    """
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must be 2-D [N, K] with K >= 1, got shape {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape [{logits.shape[0]}] to match logits, got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if logits.shape[0] == 0:
        raise ValueError("logits is empty; need at least one row")
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins} must be at least 1")
    num_classes = logits.shape[1]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"labels contains {bad}; allowed labels are 0..{num_classes - 1}")

    dtype = torch.promote_types(logits.dtype, torch.float32)
    # Probabilities, not logits: torchmetrics only applies softmax when some value is outside
    # [0, 1], which logits may or may not be.
    probabilities = torch.softmax(logits.detach().to(dtype), dim=1)
    error = multiclass_calibration_error(
        probabilities,
        labels.to(device=probabilities.device, dtype=torch.long),
        num_classes=num_classes,
        n_bins=n_bins,
        norm="l1",
    )
    return 100.0 * float(error)
