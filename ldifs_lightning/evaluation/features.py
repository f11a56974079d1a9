"""Batched, l2-normalised feature extraction from an image encoder, sharded under DDP."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sized
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from ldifs_lightning.distributed import all_gather_strided, rank_and_world_size
from ldifs_lightning.models.sharding import is_sharded, reshard

__all__ = ["PrecisionEncoder", "extract_features"]


class Precision(Protocol):
    """What :class:`PrecisionEncoder` uses of a Lightning precision plugin."""

    def convert_input(self, data: Any) -> Any: ...

    def forward_context(self) -> AbstractContextManager: ...


class PrecisionEncoder(nn.Module):
    """``encoder`` run as a training step runs it, under a trainer's precision plugin.

    Inputs are converted to the plugin's dtype (``bf16-true`` weights need bf16 images) and the
    forward runs in its context (autocast for ``*-mixed``).

    Example:
        >>> from lightning.pytorch.plugins.precision import Precision as Plain
        >>> encoder = PrecisionEncoder(nn.Flatten(), Plain())
        >>> encoder(torch.ones(2, 1, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, encoder: nn.Module, precision: Precision) -> None:
        super().__init__()
        self.encoder = encoder
        self.precision = precision

    def forward(self, images: Tensor) -> Tensor:
        images = self.precision.convert_input(images)
        with self.precision.forward_context():
            return self.encoder(images)


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
        if is_sharded(encoder):
            # An FSDP root keeps its own parameters gathered after a forward, expecting a
            # backward; without one they would stay gathered (and unsharded in checkpoints).
            reshard(encoder)
    if not features:
        empty = torch.empty
        return empty((0, 0), device=device), empty(0, dtype=torch.int64, device=device)
    # Outside inference mode these ops yield ordinary tensors, which callers may modify in place.
    return torch.cat(features), torch.cat(labels)


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
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized):
        raise ValueError(
            f"dataset must be a map-style Dataset with __len__, got {type(dataset).__name__}"
        )
    total = len(dataset)
    if total == 0:
        raise ValueError("dataset is empty; need at least one item")
    device = torch.device(device)
    rank, world_size = rank_and_world_size()
    extract = functools.partial(
        _extract_local,
        batch_size=batch_size,
        device=device,
        autocast_dtype=autocast_dtype,
        num_workers=num_workers,
    )

    if world_size == 1:
        features, labels = extract(encoder, dataset)
        return F.normalize(features, dim=1), labels

    # Equal item counts on every rank: a sharded (FSDP) encoder all-gathers in each forward, so
    # ranks must run the same number of batches. The repeated items land past `total` after the
    # gather (rank r's row m is item m * W + r) and are trimmed there.
    per_rank = math.ceil(total / world_size)
    shard = Subset(dataset, [i % total for i in range(rank, per_rank * world_size, world_size)])
    error: BaseException | None = None
    try:
        features, labels = extract(encoder, shard)
    except Exception as exc:  # re-raised after telling the other ranks, so none of them hangs
        error = exc
        features = torch.empty((0, 0), device=device)
        labels = torch.empty(0, dtype=torch.int64, device=device)
    try:
        features, labels = all_gather_strided(features, labels, error is not None, total=total)
    except RuntimeError:
        if error is not None:
            raise error from None
        raise
    return F.normalize(features, dim=1), labels
