"""A trainable CLIP text tower (for FLYP): captions in, unit-norm embeddings out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ldifs_lightning.models.factory import get_tokenizer, logit_scale_of
from ldifs_lightning.models.zero_shot import zero_shot_class_embeddings


class TextTower(nn.Module):
    """The text half of an open_clip CLIP, with its ``logit_scale``.

    The image tower is removed from the wrapped model (it lives elsewhere), so this module holds
    only the text weights.

    Example:
        >>> from ldifs_lightning.models import create_clip
        >>> clip = create_clip("ldifs-tiny-vit")
        >>> tower = TextTower(clip, "ldifs-tiny-vit")
        >>> tower.encode(["a photo of a cat."]).shape
        torch.Size([1, 32])
    """

    def __init__(self, clip: nn.Module, model_name: str) -> None:
        super().__init__()
        clip.visual = nn.Identity()  # keep only the text side's parameters
        self.clip = clip
        self.tokenizer = get_tokenizer(model_name)

    @property
    def logit_scale(self) -> torch.Tensor:
        return logit_scale_of(self.clip)

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings ``[len(captions), D]`` (with gradients)."""
        tokens = self.tokenizer(list(captions)).to(self.logit_scale.device)
        # torch types a module's attributes as Tensor | Module; open_clip's is a method.
        encode_text = cast(Callable[[torch.Tensor], torch.Tensor], self.clip.encode_text)
        return F.normalize(encode_text(tokens), dim=-1)

    def class_embeddings(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Zero-shot class embeddings from the current weights (no gradients)."""
        return zero_shot_class_embeddings(self.clip, self.tokenizer, classnames, templates)


def sample_captions(
    classnames: Sequence[str],
    templates: Sequence[str],
    labels: torch.Tensor,
    generator: torch.Generator,
) -> list[str]:
    """One caption per label: a template drawn with ``generator``, filled with the class name.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_captions(["cat", "dog"], ["a {}."], torch.tensor([1, 0]), g)
        ['a dog.', 'a cat.']
    """
    choice = torch.randint(len(templates), (len(labels),), generator=generator)
    return [
        templates[int(t)].format(classnames[int(y)])
        for t, y in zip(choice, labels.tolist(), strict=True)
    ]
