"""Zero-shot classification heads from class names and prompt templates."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def check_templates(templates: Sequence[str]) -> None:
    """Raise a one-line error unless every template is a string with one ``{}`` placeholder."""
    if not templates:
        raise ValueError("templates is empty: give at least one prompt such as 'a photo of a {}.'")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"template {template!r} must be a string with exactly one '{{}}' for the class name"
            )


@torch.no_grad()
def zero_shot_class_embeddings(
    clip_model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    batch_size: int = 256,
) -> torch.Tensor:
    """Unit-norm text embedding per class: templates filled in, encoded, normalised, averaged.

    The text tower runs in eval mode (its previous mode is restored) without gradients, in batches
    of ``batch_size`` captions.

    Returns:
        A ``[num_classes, embed_dim]`` float32 tensor with unit-norm rows.
    """
    if not classnames:
        raise ValueError("classnames is empty: give one name per class of the task")
    check_templates(templates)
    captions = [template.format(name) for name in classnames for template in templates]
    device = next(clip_model.parameters()).device
    was_training = clip_model.training
    clip_model.eval()
    try:
        chunks = []
        for start in range(0, len(captions), batch_size):
            tokens = tokenizer(captions[start : start + batch_size]).to(device)
            chunks.append(F.normalize(clip_model.encode_text(tokens).float(), dim=-1))
    finally:
        clip_model.train(was_training)
    per_caption = torch.cat(chunks).view(len(classnames), len(templates), -1)
    return F.normalize(per_caption.mean(dim=1), dim=-1)


def build_zero_shot_head(
    clip_model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    batch_size: int = 256,
) -> nn.Linear:
    """A linear head whose logits on unit-norm image features equal CLIP's zero-shot logits.

    Weight = ``logit_scale.exp()`` x class embeddings, bias = 0.

    Example:
        >>> from ldifs_lightning.models import create_clip, get_tokenizer
        >>> clip = create_clip("ldifs-tiny-vit")
        >>> head = build_zero_shot_head(clip, get_tokenizer("ldifs-tiny-vit"), ["cat", "dog"],
        ...                             ["a photo of a {}."])
        >>> head.weight.shape
        torch.Size([2, 32])
    """
    embeddings = zero_shot_class_embeddings(
        clip_model, tokenizer, classnames, templates, batch_size
    )
    head = nn.Linear(embeddings.shape[1], embeddings.shape[0])
    with torch.no_grad():
        head.weight.copy_(clip_model.logit_scale.exp().float() * embeddings)
        head.bias.zero_()
    return head
