"""L2-SP: squared l2 distance of parameters from their pre-trained values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


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
