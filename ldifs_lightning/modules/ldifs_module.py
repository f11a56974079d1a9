"""LDIFSModule: the one-line drop-in for the paper's method (FineTuneModule + LDIFS)."""

from __future__ import annotations

from collections.abc import Sequence

from ldifs_lightning.modules.fine_tuner import HeadInit
from ldifs_lightning.modules.finetune import FineTuneModule
from ldifs_lightning.regularizers import LDIFS, Regularizer
from ldifs_lightning.regularizers.frozen_copy import CheckpointReference, ReferenceDtype
from ldifs_lightning.regularizers.ldifs import Normalize


class LDIFSModule(FineTuneModule):
    """Fine-tune a CLIP image encoder with cross-entropy + ``ldifs_weight`` x LDIFS.

    Cross-entropy on a zero-shot-initialised head plus ``ldifs_weight`` times the LDIFS distance
    between the encoder's taps and those of a frozen copy of the pre-trained encoder (never
    trained, always in eval mode, outside the optimizer). The trainable encoder runs once per
    step: its taps are recorded with forward hooks on the same forward that produces the logits.
    It is :class:`FineTuneModule` with an :class:`~ldifs_lightning.regularizers.LDIFS` regulariser
    built from the LDIFS arguments below (``ldifs_weight=0``: none, i.e. plain FT); every other
    argument is FineTuneModule's.

    Args:
        classnames: One human-readable name per class, in label order.
        templates: Prompt templates with one ``{}`` each.
        model_name: open_clip architecture, e.g. ``"ViT-B-32"`` or ``"ldifs-tiny-vit"``.
        pretrained: open_clip tag, local checkpoint path, ``"demo"`` or null (random init).
        model_config: Optional path to a JSON model config (or folder of them) to register first.
        ldifs_weight: lambda, the weight of the LDIFS term; 0 disables it.
        normalize: Feature normalisation inside LDIFS: ``"token"`` (reference code, default),
            ``"channel"`` (LPIPS-style) or ``"none"``.
        taps: Encoder module names whose outputs LDIFS compares; null uses the defaults.
        reference_dtype: ``auto``: under ``bf16-mixed`` / ``16-mixed`` the frozen copy keeps its
            matrices in the autocast dtype (half the memory, same LDIFS value); ``float32``.
        checkpoint_reference: ``auto``: checkpoints leave the frozen copy out when it is
            rebuildable from ``model_name`` / ``pretrained`` (sha256-checked on load);
            ``always``: checkpoints hold it.
        regularizers: Further regularisers added next to LDIFS.
        label_smoothing: Label smoothing of the cross-entropy.
        head_init: ``zeroshot``, ``linear_probe`` (LP-FT) or ``random``.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps before the cosine decay.
        text_batch_size: Captions per batch when building the zero-shot head.
        seed: Seed of LP-FT's probe (its held-out split for choosing the l2 strength).
        activation_checkpointing: Recompute the encoder's transformer blocks in backward.

    Example:
        >>> import torch
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
        normalize: Normalize = "token",
        taps: list[str] | None = None,
        reference_dtype: ReferenceDtype = "auto",
        checkpoint_reference: CheckpointReference = "auto",
        regularizers: list[Regularizer] | None = None,
        label_smoothing: float = 0.0,
        head_init: HeadInit = "zeroshot",
        lr: float = 1e-5,
        weight_decay: float = 0.1,
        warmup_steps: int = 500,
        text_batch_size: int = 256,
        seed: int = 0,
        activation_checkpointing: bool = False,
    ) -> None:
        if ldifs_weight < 0:
            raise ValueError(f"ldifs_weight={ldifs_weight} must be >= 0 (0 disables LDIFS)")
        ldifs = LDIFS(ldifs_weight, normalize, taps, reference_dtype, checkpoint_reference)
        terms = [ldifs] if ldifs_weight > 0 else []
        super().__init__(
            classnames,
            templates,
            model_name=model_name,
            pretrained=pretrained,
            model_config=model_config,
            regularizers=[*terms, *(regularizers or [])],
            label_smoothing=label_smoothing,
            head_init=head_init,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            text_batch_size=text_batch_size,
            seed=seed,
            activation_checkpointing=activation_checkpointing,
        )
        self.ldifs_weight = ldifs_weight
