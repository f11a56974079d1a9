"""Zero-shot classification heads from class names and prompt templates."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from open_clip import build_zero_shot_classifier
from torch import nn

from ldifs_lightning.models.factory import logit_scale_of


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

    This is open_clip's ``build_zero_shot_classifier`` (what CLIP_benchmark's zero-shot
    evaluation uses), transposed to one row per class, with the checks above, the text tower in
    eval mode (its previous mode restored) and batches of about ``batch_size`` captions (whole
    classes, at least one per batch).

    Returns:
        A ``[num_classes, embed_dim]`` float32 tensor with unit-norm rows.

    Example:
        >>> from ldifs_lightning.models import create_clip, get_tokenizer
        >>> clip = create_clip("ldifs-tiny-vit")
        >>> zero_shot_class_embeddings(
        ...     clip, get_tokenizer("ldifs-tiny-vit"), ["cat", "dog"], ["a photo of a {}."]
        ... ).shape
        torch.Size([2, 32])
    """
    if not classnames:
        raise ValueError("classnames is empty: give one name per class of the task")
    check_templates(templates)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1 caption")
    device = next(clip_model.parameters()).device
    was_training = clip_model.training
    clip_model.eval()
    try:
        weights = build_zero_shot_classifier(
            clip_model,
            tokenizer,
            list(classnames),
            list(templates),
            num_classes_per_batch=max(1, batch_size // len(templates)),
            device=device,
        )
    finally:
        clip_model.train(was_training)
    return weights.t().float().contiguous()


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
        head.weight.copy_(logit_scale_of(clip_model).exp().float() * embeddings)
        head.bias.zero_()
    return head
