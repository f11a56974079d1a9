"""LDIFS: l2 distance between fine-tuned and pre-trained intermediate features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Normalize = Literal["token", "channel", "none"]
NORMALIZE_MODES: tuple[str, ...] = ("token", "channel", "none")


def check_normalize(normalize: str) -> None:
    """Raise a one-line error unless ``normalize`` is one of the three modes."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize={normalize!r} is not one of {list(NORMALIZE_MODES)}")


def ldifs_distance(
    features: Sequence[torch.Tensor],
    reference: Sequence[torch.Tensor],
    normalize: Normalize = "token",
    eps: float = 1e-12,
) -> torch.Tensor:
    """LDIFS distance between two lists of taps, each ``[N, P, C]``.

    For each tap ``l``: ``d_l[n] = mean over p, c of (nrm(f_l)[n, p, c] - nrm(r_l)[n, p, c])^2``;
    the result is the mean over taps and then over the batch (a scalar). Squared, no square root.
    ``reference`` is treated as a constant (detached), so gradients flow only into ``features``.
    The computation runs in float32 whatever the input dtype (bf16 taps under autocast).

    ``normalize`` chooses ``nrm``:

    * ``"token"`` (default): unit l2 norm over the P positions, for each channel. This is what the
      released reference code does (``F.normalize(dim=1)`` on ``[N, T, D]``) and what the paper's
      ``lambda = 10`` is calibrated for.
    * ``"channel"``: unit l2 norm over the C channels at each position, LPIPS-style, as the paper's
      text reads. Each normalised entry is then about ``1/sqrt(C)`` instead of ``1/sqrt(P)``, so the
      distance is roughly ``P / C`` times smaller than with ``"token"`` (e.g. 50 / 768 for
      ViT-B/32) and needs a correspondingly larger weight.
    * ``"none"``: raw features; the scale is that of the activations.

    Zero vectors stay zero (division by ``max(norm, eps)``).

    Example:
        >>> f = [torch.randn(2, 5, 8, requires_grad=True)]
        >>> ldifs_distance(f, [t.detach() for t in f]).item()
        0.0
    """
    check_normalize(normalize)
    if len(features) != len(reference):
        raise ValueError(
            f"got {len(features)} feature taps but {len(reference)} reference taps; "
            "they must pair up"
        )
    if not features:
        raise ValueError("no taps given: ldifs_distance needs at least one [N, P, C] tensor pair")
    per_tap = []
    for index, (feature, ref) in enumerate(zip(features, reference, strict=True)):
        if feature.dim() != 3 or feature.shape != ref.shape:
            raise ValueError(
                f"tap {index}: features {tuple(feature.shape)} and reference {tuple(ref.shape)} "
                "must have the same [N, P, C] shape"
            )
        feature, ref = feature.float(), ref.detach().float()
        if normalize != "none":
            dim = 1 if normalize == "token" else 2
            feature = F.normalize(feature, dim=dim, eps=eps)
            ref = F.normalize(ref, dim=dim, eps=eps)
        per_tap.append((feature - ref).pow(2).mean(dim=(1, 2)))
    return torch.stack(per_tap).mean(dim=0).mean()
