"""The package's only ``torch.distributed`` helpers: rank, gather, broadcast, all-ranks-agree.

Every helper is the identity (or a local no-op) without an initialised process group or with a
world size of 1, so callers use them unconditionally. Each one is a collective otherwise: every
rank must call it, in the same order.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_objects",
    "all_gather_strided",
    "all_ranks_agree",
    "barrier",
    "broadcast_from_rank_zero",
    "is_rank_zero",
    "rank_and_world_size",
]

T = TypeVar("T")


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one.

    Example:
        >>> rank_and_world_size()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait until every rank gets here (e.g. for a file rank zero writes that all ranks read).

    Example:
        >>> barrier()  # no process group: returns at once
    """
    if rank_and_world_size()[1] > 1:
        dist.barrier()


def is_rank_zero() -> bool:
    """Whether this process writes the files (rank zero, or the only process).

    Example:
        >>> is_rank_zero()
        True
    """
    return rank_and_world_size()[0] == 0


def broadcast_from_rank_zero(value: T) -> T:
    """Rank zero's ``value`` on every rank (any picklable object).

    Example:
        >>> broadcast_from_rank_zero({"accuracy": 0.5})
        {'accuracy': 0.5}
    """
    if rank_and_world_size()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: T) -> list[T]:
    """Every rank's ``value``, in rank order (any picklable object).

    Example:
        >>> all_gather_objects(3)
        [3]
    """
    world_size = rank_and_world_size()[1]
    if world_size == 1:
        return [value]
    box: list[T | None] = [None] * world_size
    dist.all_gather_object(box, value)
    return box  # type: ignore[return-value]  # all_gather_object filled every slot


def all_ranks_agree(flag: bool) -> bool:
    """True only if ``flag`` is true on every rank.

    Example:
        >>> all_ranks_agree(True)
        True
    """
    return all(all_gather_objects(bool(flag)))


def _collective_device(device: torch.device) -> torch.device:
    """Device the process group's backend exchanges tensors on."""
    backend = str(dist.get_backend()).lower()
    if "gloo" in backend or "mpi" in backend:
        return torch.device("cpu")  # also covers mixed "cpu:gloo,cuda:nccl" groups
    if "nccl" in backend and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def all_gather_strided(
    features: Tensor, labels: Tensor, failed: bool, *, total: int
) -> tuple[Tensor, Tensor]:
    """All-gather shards where rank r holds items r, r + W, r + 2W, ... into item order.

    Every rank passes its shard (an empty shard may be a ``[0, 0]`` placeholder) and whether it
    failed to compute it. One collective first agrees on the feature width and on failure, so
    every rank raises or proceeds alike and none waits forever in the gathers.

    Args:
        features: ``[n_r, D]`` features of this rank's items, in order.
        labels: ``[n_r]`` int64 labels of this rank's items.
        failed: Whether this rank failed (its tensors are placeholders).
        total: Number of items over all ranks; padding past it is dropped.

    Returns:
        ``([total, D] float32, [total] int64)`` on ``features``' device.

    Raises:
        RuntimeError: When any rank failed, or ranks disagree on the feature width.

    Example:
        >>> all_gather_strided(torch.ones(2, 3), torch.arange(2), False, total=2)[1].tolist()
        [0, 1]
    """
    device = features.device
    world_size = rank_and_world_size()[1]
    if world_size == 1:
        if failed:
            raise RuntimeError("feature extraction failed")
        return features.float()[:total], labels[:total]
    comm = _collective_device(device)
    # Entries: max width, -(min width over non-empty shards), failure.
    width = features.shape[1] if labels.numel() else 0
    meta = torch.tensor(
        [width, -width if labels.numel() else -(2**62), int(failed)], dtype=torch.int64, device=comm
    )
    dist.all_reduce(meta, op=dist.ReduceOp.MAX)
    dim, min_dim, any_failed = int(meta[0]), -int(meta[1]), bool(meta[2])
    if any_failed:
        raise RuntimeError("feature extraction failed on another rank")
    if min_dim != dim:
        raise RuntimeError(f"ranks disagree on the feature width: {min_dim} vs {dim}")

    per_rank = math.ceil(total / world_size)
    count = labels.shape[0]
    padded_features = torch.zeros((per_rank, dim), dtype=torch.float32, device=comm)
    padded_labels = torch.full((per_rank,), -1, dtype=torch.int64, device=comm)
    if count:  # an empty shard's placeholder is [0, 0] and has nothing to copy
        padded_features[:count] = features.to(comm)
        padded_labels[:count] = labels.to(comm)
    feature_list = [torch.empty_like(padded_features) for _ in range(world_size)]
    label_list = [torch.empty_like(padded_labels) for _ in range(world_size)]
    dist.all_gather(feature_list, padded_features)
    dist.all_gather(label_list, padded_labels)
    # Row m of rank r is item m * W + r, so interleaving ranks restores item order, and the
    # padding (only in the last row of the short ranks) lands past `total` and is trimmed.
    all_features = torch.stack(feature_list, dim=1).reshape(per_rank * world_size, dim)[:total]
    all_labels = torch.stack(label_list, dim=1).reshape(per_rank * world_size)[:total]
    return all_features.to(device), all_labels.to(device)
