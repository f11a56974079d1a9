"""The fine-tuning LightningModule: CLIP image encoder + zero-shot-initialised head + LDIFS."""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ldifs_lightning.models import (
    FeatureTaps,
    build_zero_shot_head,
    check_templates,
    create_clip,
    get_tokenizer,
    image_size_of,
    register_model_config,
)
from ldifs_lightning.modules.schedule import warmup_cosine_factor
from ldifs_lightning.regularizers.ldifs import check_normalize, ldifs_distance

# Set while load_from_checkpoint builds the module: every weight then comes from the checkpoint,
# so pre-trained weights are not fetched and the head is not rebuilt from the text tower.
_WEIGHTS_FROM_CHECKPOINT = contextvars.ContextVar("weights_from_checkpoint", default=False)


@contextlib.contextmanager
def _attention_fast_path_disabled() -> Iterator[None]:
    """Make the frozen copy use the same attention kernels as the trainable encoder.

    Without gradients and in eval mode, ``nn.MultiheadAttention`` switches to a fused "fast path"
    whose rounding differs slightly; with it the LDIFS term of identical weights is ~1e-16, not 0.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@contextlib.contextmanager
def _weights_from_checkpoint() -> Iterator[None]:
    token = _WEIGHTS_FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FROM_CHECKPOINT.reset(token)


class LDIFSModule(LightningModule):
    """Fine-tune a CLIP image encoder with cross-entropy + ``ldifs_weight`` x LDIFS distance.

    Holds the trainable image encoder, a frozen copy of it (only when ``ldifs_weight > 0``; never
    trained, always in eval mode, outside the optimizer) and a linear head initialised from the
    zero-shot text embeddings of ``classnames`` x ``templates``. The text tower is used once to
    build the head and then dropped. The trainable encoder runs once per step: the taps are
    recorded with forward hooks on the same forward that produces the logits.

    Args:
        classnames: One human-readable name per class, in label order (LightningCLI links it from
            the DataModule).
        templates: Prompt templates with one ``{}`` each; the head averages over them.
        model_name: open_clip architecture, e.g. ``"ViT-B-32"`` or ``"ldifs-tiny-vit"``.
        pretrained: open_clip tag (``"openai"``), local checkpoint path, or null (random init).
        model_config: Optional path to a JSON model config (or folder of them) to register first.
        ldifs_weight: lambda, the weight of the LDIFS term; 0 is plain fine-tuning (FT).
        normalize: Feature normalisation inside LDIFS: ``"token"`` (reference code, default),
            ``"channel"`` (LPIPS-style) or ``"none"``.
        taps: Encoder module names whose outputs LDIFS compares; null uses the defaults.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (applied to every trainable parameter).
        warmup_steps: Linear warm-up steps before the cosine decay.
        text_batch_size: Captions per batch when building the zero-shot head.

    Example:
        >>> module = LDIFSModule(["cat", "dog"], model_name="ldifs-tiny-vit", pretrained=None)
        >>> module(torch.randn(4, 3, 32, 32)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        classnames: Sequence[str],
        templates: Sequence[str] = ("a photo of a {}.",),
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        model_config: str | None = None,
        ldifs_weight: float = 10.0,
        normalize: Literal["token", "channel", "none"] = "token",
        taps: list[str] | None = None,
        lr: float = 1e-5,
        weight_decay: float = 0.1,
        warmup_steps: int = 500,
        text_batch_size: int = 256,
    ) -> None:
        super().__init__()
        if ldifs_weight < 0:
            raise ValueError(f"ldifs_weight={ldifs_weight} must be >= 0 (0 is plain fine-tuning)")
        check_normalize(normalize)
        if not classnames:
            raise ValueError("classnames is empty: give one name per class of the task")
        check_templates(templates)
        if lr <= 0 or weight_decay < 0 or warmup_steps < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, warmup_steps >= 0; got lr={lr}, "
                f"weight_decay={weight_decay}, warmup_steps={warmup_steps}"
            )
        if model_config is not None:
            register_model_config(model_config)
        self.save_hyperparameters()
        self.classnames = list(classnames)

        from_checkpoint = _WEIGHTS_FROM_CHECKPOINT.get()
        clip = create_clip(model_name, None if from_checkpoint else pretrained)
        self.image_encoder: nn.Module = clip.visual
        self.tap_names = FeatureTaps(self.image_encoder, taps).names  # validates names early
        if from_checkpoint:
            self.head = nn.Linear(clip.text_projection.shape[1], len(self.classnames))
        else:
            tokenizer = get_tokenizer(model_name)
            self.head = build_zero_shot_head(
                clip, tokenizer, self.classnames, templates, batch_size=text_batch_size
            )
        del clip  # the text tower is only needed for the head

        self.reference_encoder: nn.Module | None = None
        if ldifs_weight > 0:
            self.reference_encoder = copy.deepcopy(self.image_encoder)
            self.reference_encoder.requires_grad_(False)
            self.reference_encoder.eval()

        num_classes = len(self.classnames)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> LDIFSModule:  # type: ignore[override]
        """Load a checkpoint offline: every weight, the frozen copy's included, comes from it."""
        kwargs.setdefault("weights_only", True)
        with _weights_from_checkpoint():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @property
    def image_size(self) -> int:
        """Side of the square images the encoder expects."""
        return image_size_of(self.image_encoder)

    def train(self, mode: bool = True) -> LDIFSModule:
        super().train(mode)
        if self.reference_encoder is not None:
            self.reference_encoder.eval()  # the frozen copy is never put in train mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits: the head applied to l2-normalised image embeddings."""
        return self.head(F.normalize(self.image_encoder(images), dim=-1))

    def _loss_terms(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the LDIFS distance from one forward of the trainable encoder."""
        if self.reference_encoder is None:
            return self(images), images.new_zeros(())
        with FeatureTaps(self.image_encoder, self.tap_names) as taps:
            embedding = self.image_encoder(images)
        with (
            torch.no_grad(),
            _attention_fast_path_disabled(),
            FeatureTaps(self.reference_encoder, self.tap_names) as ref_taps,
        ):
            self.reference_encoder(images)
        distance = ldifs_distance(taps.features(), ref_taps.features(), self.hparams.normalize)
        return self.head(F.normalize(embedding, dim=-1)), distance

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        logits, distance = self._loss_terms(images)
        ce = F.cross_entropy(logits, labels)
        loss = ce + self.hparams.ldifs_weight * distance
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ce", ce)
        self.log("train/ldifs", distance)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.val_acc(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.test_acc(self(images), labels)
        self.log("test/acc", self.test_acc)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is not None and num_classes != len(self.classnames):
            raise ValueError(
                f"the data has {num_classes} classes but the module got {len(self.classnames)} "
                "class names; pass the data's class names (LightningCLI links them for you)"
            )
        data_size = getattr(datamodule, "hparams", {}).get("image_size")
        if data_size is not None and data_size != self.image_size:
            raise ValueError(
                f"data image_size={data_size} but {self.hparams.model_name} expects "
                f"{self.image_size}; set data.image_size to {self.image_size}"
            )

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates (never the frozen copy's)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.trainable_parameters(), lr=hp.lr, weight_decay=hp.weight_decay
        )
        total = float(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            partial(warmup_cosine_factor, warmup_steps=hp.warmup_steps, total_steps=total),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
