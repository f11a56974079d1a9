"""L2-SP: squared l2 distance of parameters from their pre-trained values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ldifs_lightning.models.sharding import full_value, is_sharded, reshard
from ldifs_lightning.regularizers.base import ReferenceRegularizer, TrainingStep
from ldifs_lightning.regularizers.frozen_copy import CheckpointReference, EncoderSource, FrozenCopy


class _SquaredDistance(torch.autograd.Function):
    """``sum((theta - theta0)^2)`` in float32 that saves only ``theta`` and ``theta0``.

    Plain autograd would save ``theta - theta0`` for the backward: one more copy of every
    parameter, alive until the backward. Both inputs are alive anyway, so the backward recomputes
    the difference instead.
    """

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, theta0: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(theta, theta0)
        return (theta.float() - theta0.float()).pow(2).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        theta, theta0 = ctx.saved_tensors
        return (2.0 * grad * (theta.float() - theta0.float())).to(theta.dtype), None


def l2sp_penalty(
    parameters: Iterable[torch.Tensor], reference: Iterable[torch.Tensor]
) -> torch.Tensor:
    """``sum over parameters of ||theta - theta_0||^2`` (the caller multiplies by alpha).

    ``reference`` is treated as a constant. Parameters pair up in order and must match in shape.

    Example:
        >>> l2sp_penalty([torch.tensor([1.0, 2.0])], [torch.tensor([0.0, 0.0])]).item()
        5.0
    """
    total = None
    for index, (theta, theta0) in enumerate(zip(parameters, reference, strict=True)):
        if theta.shape != theta0.shape:
            raise ValueError(
                f"parameter {index}: shape {tuple(theta.shape)} differs from the reference's "
                f"{tuple(theta0.shape)}"
            )
        if type(theta) is torch.Tensor or isinstance(theta, torch.nn.Parameter):
            term = _SquaredDistance.apply(theta, theta0.detach())
        else:  # e.g. a sharded DTensor: plain autograd ops, which dispatch on it
            term = (theta.float() - theta0.detach().float()).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l2sp_penalty got no parameters")
    return total


class L2SP(ReferenceRegularizer):
    """L2-SP: ``sum over encoder parameters of ||theta - theta_0||^2`` (Li et al., 2018).

    When bound, it keeps the pre-trained parameters ``theta_0`` in a float32 :class:`FrozenCopy`
    (bf16 rounding, up to 2^-9 relative, would outweigh early updates). The penalty is computed
    before the trainable forward, from parameters only: no frozen forward runs.

    Args:
        weight: alpha, the weight of the penalty.
        checkpoint_reference: ``auto``: checkpoints leave ``theta_0`` out when it is rebuildable
            from ``model_name`` / ``pretrained``; ``always``: checkpoints hold it.

    Example:
        >>> encoder = torch.nn.Linear(2, 1)
        >>> l2sp = L2SP(weight=0.1)
        >>> l2sp.bind(encoder, EncoderSource("ldifs-tiny-vit", None))
        >>> with torch.no_grad():
        ...     _ = encoder.bias.add_(2.0)
        >>> step = TrainingStep(torch.zeros(1, 2), torch.zeros(1), encoder)
        >>> l2sp.before_forward(step)
        >>> l2sp(step).item()
        4.0
    """

    name = "l2sp"

    def __init__(self, weight: float = 0.01, checkpoint_reference: CheckpointReference = "auto"):
        super().__init__(weight)
        if checkpoint_reference not in ("auto", "always"):
            raise ValueError(
                f"checkpoint_reference={checkpoint_reference!r} is not one of ['auto', 'always']"
            )
        self.checkpoint_reference = checkpoint_reference
        self.reference: FrozenCopy | None = None
        self._penalty: torch.Tensor | None = None

    def bind(self, encoder: nn.Module, source: EncoderSource) -> None:
        self.reference = FrozenCopy(encoder, source, self.checkpoint_reference)

    def before_forward(self, step: TrainingStep) -> None:
        """The penalty, read before the forward, while sharded parameters are all sharded."""
        if self.reference is None:
            raise RuntimeError("L2SP is not bound to an encoder: call bind() first")
        frozen = self.reference.encoder
        if is_sharded(step.encoder):
            # Both encoders' units sharded alike: the penalty is a sum of local shard terms
            # (all-reduced by full_value), and its gradient lands on the local shards.
            reshard(step.encoder)
            reshard(frozen)
        penalty = l2sp_penalty(step.encoder.parameters(), frozen.parameters())
        self._penalty = full_value(penalty)

    def forward(self, step: TrainingStep) -> torch.Tensor:
        penalty, self._penalty = self._penalty, None
        if penalty is None:
            raise RuntimeError("L2SP.forward without before_forward on the same step")
        return penalty
