"""WiSE-FT: weight-space interpolation between pre-trained and fine-tuned weights."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn


def check_alpha(alpha: float) -> None:
    """Raise a one-line error unless ``0 <= alpha <= 1``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"WiSE-FT alpha={alpha} must be in [0, 1] (0: pre-trained, 1: fine-tuned)")


def interpolate_state_dicts(
    pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * pretrained + alpha * finetuned`` for every floating-point entry.

    Alpha 0 and 1 return the endpoints exactly (copies); integer buffers (e.g. BatchNorm's
    ``num_batches_tracked``) are taken from the fine-tuned side.

    Example:
        >>> a, b = {"w": torch.tensor([0.0, 2.0])}, {"w": torch.tensor([2.0, 4.0])}
        >>> interpolate_state_dicts(a, b, 0.5)["w"].tolist()
        [1.0, 3.0]
    """
    check_alpha(alpha)
    if set(pretrained) != set(finetuned):
        missing = sorted(set(pretrained) ^ set(finetuned))[:5]
        raise ValueError(f"the two state dicts hold different entries, e.g. {missing}")
    mixed = {}
    for name, tuned in finetuned.items():
        base = pretrained[name]
        if not tuned.is_floating_point() or alpha == 1.0:
            mixed[name] = tuned.clone()
        elif alpha == 0.0:
            mixed[name] = base.clone().to(tuned)
        else:
            mixed[name] = torch.lerp(base.to(tuned), tuned, alpha)
    return mixed


def wise_ft(pretrained: nn.Module, finetuned: nn.Module, alpha: float) -> nn.Module:
    """A copy of ``finetuned`` whose weights are interpolated towards ``pretrained``.

    Example:
        >>> zero, one = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> torch.equal(wise_ft(zero, one, 0.0).weight, zero.weight)
        True
    """
    mixed = copy.deepcopy(finetuned)
    mixed.load_state_dict(
        interpolate_state_dicts(pretrained.state_dict(), finetuned.state_dict(), alpha)
    )
    return mixed
