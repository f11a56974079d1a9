"""FLYPModule: fine-tune like you pre-train, training both CLIP towers on class captions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from open_clip import ClipLoss
from torch import nn
from torch.optim import Optimizer

from ldifs_lightning.models.text_tower import TextTower, sample_captions
from ldifs_lightning.modules.fine_tuner import CLIPFineTuner
from ldifs_lightning.regularizers import Regularizer

FLYPLoss = Literal["contrastive", "cross_entropy"]

#: Upper bound of ``logit_scale`` (a temperature of 1/100), as open_clip's training loop keeps it.
MAX_LOGIT_SCALE = math.log(100)


class FLYPModule(CLIPFineTuner):
    """FLYP (Goyal et al., 2023): train the image and the text tower with CLIP's own loss.

    Each step every image is paired with a caption of its class (one template sampled per image);
    ``contrastive`` is the symmetric CLIP loss over the batch (FLYP), ``cross_entropy`` is
    cross-entropy over ``logit_scale * cosine(image, one sampled caption per class)`` (FLYP-CE).
    The model classifies with the current text tower's zero-shot head, refreshed before
    validation, before testing and at the end of training. Regularisers act on the image encoder.

    As open_clip's training script does, ``logit_scale`` is clamped to ``[0, ln 100]`` after every
    optimizer step and gets no weight decay (its own AdamW group with ``weight_decay=0``); every
    other trainable parameter is decayed by ``weight_decay``.

    Args:
        classnames: One human-readable name per class, in label order.
        templates: Prompt templates with one ``{}`` each; captions are sampled from them.
        model_name: open_clip architecture.
        pretrained: open_clip tag, local checkpoint path, ``"demo"`` or null (random init).
        model_config: Optional path to a JSON model config (or folder of them) to register first.
        loss: ``contrastive`` (FLYP) or ``cross_entropy`` (FLYP-CE).
        regularizers: Terms added to the loss (acting on the image encoder).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (every trainable parameter except ``logit_scale``).
        warmup_steps: Linear warm-up steps before the cosine decay.
        text_batch_size: Captions per batch when building the zero-shot head.
        seed: Seed of the caption sampling (with the global step).
        activation_checkpointing: Recompute the image encoder's transformer blocks in backward.

    Example:
        >>> module = FLYPModule(["cat", "dog"], model_name="ldifs-tiny-vit", pretrained=None)
        >>> module(torch.randn(4, 3, 32, 32)).shape
        torch.Size([4, 2])
    """

    _strategy_loss_name = "flyp"
    #: Clamp ``logit_scale`` after each step and keep it out of weight decay (open_clip's rule).
    #: A subclass whose recipe was measured without it may set this to False.
    open_clip_logit_scale: ClassVar[bool] = True

    def __init__(
        self,
        classnames: Sequence[str],
        templates: Sequence[str] = ("a photo of a {}.",),
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        model_config: str | None = None,
        loss: FLYPLoss = "contrastive",
        regularizers: list[Regularizer] | None = None,
        lr: float = 1e-5,
        weight_decay: float = 0.1,
        warmup_steps: int = 500,
        text_batch_size: int = 256,
        seed: int = 0,
        activation_checkpointing: bool = False,
    ) -> None:
        if loss not in ("contrastive", "cross_entropy"):
            raise ValueError(f"loss={loss!r} is not one of ['contrastive', 'cross_entropy']")
        super().__init__(
            classnames,
            templates,
            model_name,
            pretrained,
            model_config,
            regularizers,
            head_init="zeroshot",
            freeze_encoder=False,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            text_batch_size=text_batch_size,
            activation_checkpointing=activation_checkpointing,
            text_tower=True,
        )
        self.loss = loss
        self.seed = seed

    def _init_text_tower(self, clip: nn.Module, model_name: str) -> None:
        self.text_tower = TextTower(clip, model_name)
        self.head.requires_grad_(False)  # FLYP classifies with the current text tower

    # ----------------------------------------------------------------------- task losses
    def _caption_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step)

    def captions(self, labels: torch.Tensor) -> list[str]:
        """One caption per label: a template drawn per image, filled with its class name."""
        return sample_captions(self.classnames, self.templates, labels, self._caption_generator())

    def task_loss(
        self, embedding: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = F.normalize(embedding, dim=-1)
        scale = self.text_tower.logit_scale.exp()
        if self.loss == "contrastive":
            text = self.text_tower.encode(self.captions(labels))
            return self._contrastive_loss()(image, text, scale), None
        text = self.text_tower.encode(self.captions(torch.arange(len(self.classnames))))
        logits = scale * image @ text.T
        return F.cross_entropy(logits, labels), logits

    def _contrastive_loss(self) -> ClipLoss:
        """The CLIP loss for the current trainer's world size and rank.

        Built per step, not cached: a module reused in another fit (other devices, other rank)
        must gather over that fit's processes. Construction only stores a few attributes.
        """
        world = self.trainer.world_size if self._trainer else 1
        rank = self.trainer.global_rank if self._trainer else 0
        return ClipLoss(gather_with_grad=True, rank=rank, world_size=world)

    # ----------------------------------------------------------------------- optimizer
    def optimizer_parameters(self) -> list[dict[str, Any]]:
        """AdamW's groups: ``logit_scale`` without weight decay, the rest with it.

        Only ``logit_scale`` leaves the decayed group: decay would pull it towards 0 (a logit
        scale of 1) at every step. open_clip's training script also exempts gains and biases
        (``p.ndim < 2`` or ``bn``/``ln``/``bias`` in the name); FLYP's released code decays every
        parameter, and this module follows it for everything but ``logit_scale``.
        """
        if not self.open_clip_logit_scale:
            return [{"params": self.trainable_parameters()}]
        scale = self.text_tower.logit_scale
        rest = [p for p in self.trainable_parameters() if p is not scale]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if scale.requires_grad:
            groups.append({"params": [scale], "weight_decay": 0.0})
        return groups

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Optimizer | Any,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """The step, then ``logit_scale`` clamped to ``[0, ln 100]`` (open_clip's training loop)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if not self.open_clip_logit_scale:
            return
        with torch.no_grad():
            self.text_tower.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    # ----------------------------------------------------------------------- the text head
    def refresh_text_head(self) -> None:
        """Classify with the current text tower's zero-shot embeddings."""
        embeddings = self.text_tower.class_embeddings(self.classnames, self.templates)
        with torch.no_grad():
            self.head.weight.copy_(self.text_tower.logit_scale.exp() * embeddings)
            self.head.bias.zero_()

    def on_validation_epoch_start(self) -> None:
        self.refresh_text_head()

    def on_train_end(self) -> None:
        self.refresh_text_head()  # callbacks' on_fit_end (WiSE-FT) and exports see the last step

    def on_test_epoch_start(self) -> None:
        self.refresh_text_head()
