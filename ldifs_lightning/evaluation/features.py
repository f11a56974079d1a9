"""Batched, l2-normalised feature extraction from an image encoder, sharded under DDP."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

__all__ = ["extract_features"]


def _distributed_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _collective_device(device: torch.device) -> torch.device:
    """Device the process group's backend exchanges tensors on."""
    backend = str(dist.get_backend()).lower()
    if "gloo" in backend or "mpi" in backend:
        return torch.device("cpu")  # also covers mixed "cpu:gloo,cuda:nccl" groups
    if "nccl" in backend and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _extract_local(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    num_workers: int,
) -> tuple[Tensor, Tensor]:
    """Raw (un-normalised) float32 features and int64 labels of ``dataset``, in order."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    if isinstance(encoder, nn.parallel.DistributedDataParallel):
        # Its forward may broadcast buffers, a collective that ranks with different numbers of
        # batches would not all reach; feature extraction needs none of what the wrapper adds.
        encoder = encoder.module
    # Restore every submodule's own flag afterwards: encoder.train(mode) would also flip
    # submodules the caller deliberately keeps in eval mode (frozen norms, a frozen copy).
    modes = [(module, module.training) for module in encoder.modules()]
    encoder.eval()
    features: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        with torch.inference_mode(), autocast:
            for batch in loader:
                if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                    raise ValueError(
                        f"dataset items must be (image, label) pairs, got a batch of type "
                        f"{type(batch).__name__}"
                    )
                images, targets = batch[0], batch[1]
                output = encoder(images.to(device, non_blocking=True))
                if not isinstance(output, Tensor) or output.ndim != 2:
                    got = tuple(output.shape) if isinstance(output, Tensor) else type(output)
                    raise ValueError(f"encoder must return a [batch, D] tensor, got {got}")
                features.append(output.float())
                labels.append(torch.as_tensor(targets).to(device=device, dtype=torch.int64))
    finally:
        for module, mode in modes:
            module.training = mode
    if not features:
        empty = torch.empty
        return empty((0, 0), device=device), empty(0, dtype=torch.int64, device=device)
    # Outside inference mode these ops yield ordinary tensors, which callers may modify in place.
    return torch.cat(features), torch.cat(labels)


def _gather_strided(
    features: Tensor,
    labels: Tensor,
    failed: bool,
    *,
    total: int,
    world_size: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """All-gather shards where rank r holds items r, r + W, r + 2W, ... into dataset order."""
    comm = _collective_device(device)
    # One collective agrees on the feature width (an empty shard does not know it) and on
    # whether any rank failed; every rank then raises or proceeds alike, so none waits forever
    # in the gathers below. Entries: max width, -(min width over non-empty shards), failure.
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
    # Row m of rank r is item m * W + r, so interleaving ranks restores dataset order, and the
    # padding (only in the last row of the short ranks) lands past `total` and is trimmed.
    all_features = torch.stack(feature_list, dim=1).reshape(per_rank * world_size, dim)[:total]
    all_labels = torch.stack(label_list, dim=1).reshape(per_rank * world_size)[:total]
    return all_features.to(device), all_labels.to(device)


def extract_features(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Encode every item of ``dataset`` and return l2-normalised features with their labels.

    The encoder runs batched under ``torch.inference_mode`` in eval mode; each submodule's
    training flag is restored afterwards. The encoder must already live on ``device``; it is not
    moved. A ``DistributedDataParallel`` wrapper is looked through (its ``.module`` is used).
    With ``autocast_dtype`` the forward runs under ``torch.autocast`` for ``device``'s type;
    features are cast to float32 before normalisation either way.

    Under ``torch.distributed`` with world size W > 1, rank r encodes items r, r + W, r + 2W, ...
    and all ranks all-gather, so every rank returns the full result in dataset order. Every rank
    must call this function (it takes part in collectives even when its shard is empty).

    Args:
        encoder: Module mapping an image batch ``[B, ...]`` to features ``[B, D]``.
        dataset: Map-style dataset of ``(image_tensor, label)`` pairs.
        batch_size: Images per forward pass.
        device: Device the images are moved to and the results are returned on.
        autocast_dtype: E.g. ``torch.bfloat16`` to run the forward under autocast; None for off.
        num_workers: DataLoader worker processes.

    Returns:
        ``(features, labels)``: ``[N, D]`` float32 with unit-norm rows and ``[N]`` int64, on
        ``device``, in dataset order.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(5, 3, 4, 4), torch.arange(5))
        >>> encoder = nn.Sequential(nn.Flatten(), nn.Linear(48, 8))
        >>> features, labels = extract_features(encoder, data, batch_size=2)
        >>> features.shape, labels.tolist()
        (torch.Size([5, 8]), [0, 1, 2, 3, 4])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if autocast_dtype is not None and not autocast_dtype.is_floating_point:
        raise ValueError(
            f"autocast_dtype must be a floating-point dtype or None, got {autocast_dtype}"
        )
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError(
            f"dataset must be a map-style Dataset with __len__, got {type(dataset).__name__}"
        )
    total = len(dataset)  # type: ignore[arg-type]
    if total == 0:
        raise ValueError("dataset is empty; need at least one item")
    device = torch.device(device)
    rank, world_size = _distributed_world()
    options = {
        "batch_size": batch_size,
        "device": device,
        "autocast_dtype": autocast_dtype,
        "num_workers": num_workers,
    }

    if world_size == 1:
        features, labels = _extract_local(encoder, dataset, **options)  # type: ignore[arg-type]
        return F.normalize(features, dim=1), labels

    # Equal item counts on every rank: a sharded (FSDP) encoder all-gathers in each forward, so
    # ranks must run the same number of batches. The repeated items land past `total` after the
    # gather (rank r's row m is item m * W + r) and are trimmed there.
    per_rank = math.ceil(total / world_size)
    shard = Subset(dataset, [i % total for i in range(rank, per_rank * world_size, world_size)])
    error: BaseException | None = None
    try:
        features, labels = _extract_local(encoder, shard, **options)  # type: ignore[arg-type]
    except Exception as exc:  # re-raised after telling the other ranks, so none of them hangs
        error = exc
        features = torch.empty((0, 0), device=device)
        labels = torch.empty(0, dtype=torch.int64, device=device)
    try:
        features, labels = _gather_strided(
            features,
            labels,
            error is not None,
            total=total,
            world_size=world_size,
            device=device,
        )
    except RuntimeError:
        if error is not None:
            raise error from None
        raise
    return F.normalize(features, dim=1), labels
