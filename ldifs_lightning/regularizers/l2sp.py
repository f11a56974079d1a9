"""L2-SP: squared l2 distance of parameters from their pre-trained values."""

from __future__ import annotations

from collections.abc import Iterable

import torch


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
        term = (theta.float() - theta0.detach().float()).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l2sp_penalty got no parameters")
    return total
