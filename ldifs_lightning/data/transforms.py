"""Image transforms as open_clip builds them for CLIP models."""

from __future__ import annotations

from collections.abc import Callable

import open_clip
import torch


def train_transform(image_size: int) -> Callable[..., torch.Tensor]:
    """RandomResizedCrop(scale=(0.9, 1.0), bicubic), RGB conversion, CLIP normalisation."""
    return open_clip.image_transform(image_size, is_train=True)


def eval_transform(image_size: int) -> Callable[..., torch.Tensor]:
    """Resize (bicubic) + center crop, RGB conversion, CLIP normalisation."""
    return open_clip.image_transform(image_size, is_train=False)
