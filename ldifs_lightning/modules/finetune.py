"""FineTuneModule: cross-entropy fine-tuning of a CLIP image encoder plus any regularisers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ldifs_lightning.modules.fine_tuner import CLIPFineTuner, HeadInit
from ldifs_lightning.regularizers import Regularizer


class FineTuneModule(CLIPFineTuner):
    """Fine-tune a CLIP image encoder with cross-entropy on a linear head, plus regularisers.

    The method is the composition: the head's initialisation, whether the encoder trains, and a
    list of :class:`~ldifs_lightning.regularizers.Regularizer` s added to the loss. The paper's
    methods are:

    ========  ===================================================================
    FT        defaults (zero-shot head, encoder trains, no regulariser)
    LS        ``label_smoothing=0.1``
    LP        ``freeze_encoder=True, head_init="linear_probe"`` (the probe, fitted
              once at fit start; nothing trains after it)
    LP-FT     ``head_init="linear_probe"``
    LDIFS     ``regularizers=[LDIFS(weight=10)]`` (or :class:`LDIFSModule`)
    L2SP      ``regularizers=[L2SP(weight=...)]``
    ========  ===================================================================

    ``freeze_encoder=True`` with another ``head_init`` trains the head alone by minibatches.

    Args:
        classnames: One human-readable name per class, in label order (LightningCLI links it from
            the DataModule).
        templates: Prompt templates with one ``{}`` each; the zero-shot head averages over them.
        model_name: open_clip architecture, e.g. ``"ViT-B-32"`` or ``"ldifs-tiny-vit"``.
        pretrained: open_clip tag (``"openai"``), local checkpoint path, ``"demo"`` (the shipped
            tiny CLIP) or null (random init).
        model_config: Optional path to a JSON model config (or folder of them) to register first.
        regularizers: Terms added to the loss, each ``weight * value``; in YAML a list of
            ``{class_path, init_args}`` (e.g. ``ldifs_lightning.regularizers.LDIFS``).
        label_smoothing: Label smoothing of the cross-entropy (LS baseline: 0.1).
        head_init: ``zeroshot`` (text embeddings), ``linear_probe`` (a probe fitted at fit start
            on the pre-trained features of the fit split under the eval transform; LP-FT) or
            ``random``.
        freeze_encoder: Keep the encoder fixed, in eval mode. With ``head_init="linear_probe"``
            this is LP: the head is the probe, frozen too, and the fit ends before its first
            step; otherwise the head alone trains. Regularisers have nothing to act on and are
            refused.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (applied to every trainable parameter).
        warmup_steps: Linear warm-up steps before the cosine decay.
        text_batch_size: Captions per batch when building the zero-shot head.
        seed: Seed of the linear probe (its held-out split for choosing the l2 strength).
        activation_checkpointing: Recompute the encoder's transformer blocks in backward instead
            of keeping their activations (less memory, about one more encoder forward per step).

    Example:
        >>> from ldifs_lightning.regularizers import L2SP
        >>> module = FineTuneModule(
        ...     ["cat", "dog"], model_name="ldifs-tiny-vit", pretrained=None,
        ...     regularizers=[L2SP(weight=0.01)],
        ... )
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
        regularizers: list[Regularizer] | None = None,
        label_smoothing: float = 0.0,
        head_init: HeadInit = "zeroshot",
        freeze_encoder: bool = False,
        lr: float = 1e-5,
        weight_decay: float = 0.1,
        warmup_steps: int = 500,
        text_batch_size: int = 256,
        seed: int = 0,
        activation_checkpointing: bool = False,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        super().__init__(
            classnames,
            templates,
            model_name,
            pretrained,
            model_config,
            regularizers,
            head_init=head_init,
            freeze_encoder=freeze_encoder,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            text_batch_size=text_batch_size,
            activation_checkpointing=activation_checkpointing,
            text_tower=False,
        )
        self.label_smoothing = label_smoothing
        self.seed = seed

    def task_loss(
        self, embedding: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (label-smoothed if set) of the head on l2-normalised embeddings."""
        logits = self.head(F.normalize(embedding, dim=-1))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return loss, logits

    def _log_task_loss(self, task_loss: torch.Tensor) -> None:
        self.log("train/ce", task_loss)
