"""ZSCL (Zheng et al., ICCV 2023), image-tower form: distil the pre-trained CLIP's zero-shot
predictions on reference images into the fine-tuned encoder.

:func:`zscl_distillation` is the term on embeddings; :class:`ZSCL` is the regulariser that owns
the reference images, the pre-trained text embeddings of their class captions and the frozen
pre-trained image encoder. ZSCL's second half, weight averaging, is a callback:
:class:`~ldifs_lightning.callbacks.EncoderWeightAveraging`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ldifs_lightning.data import get_dataset_info, list_datasets
from ldifs_lightning.data.registry import DatasetInfo
from ldifs_lightning.data.sized import dataset_length
from ldifs_lightning.data.transforms import eval_transform
from ldifs_lightning.models import (
    check_templates,
    create_clip,
    get_tokenizer,
    image_size_of,
    logit_scale_of,
    zero_shot_class_embeddings,
)
from ldifs_lightning.regularizers.base import Regularizer, TrainingStep
from ldifs_lightning.regularizers.frozen_copy import (
    CheckpointReference,
    EncoderSource,
    FrozenCopy,
)
from ldifs_lightning.regularizers.lwf import (
    check_temperature,
    distillation_kl,
    head_logits,
    teacher_embedding,
)


def zscl_distillation(
    student_embedding: torch.Tensor,
    teacher_embedding: torch.Tensor,
    text_embeddings: torch.Tensor,
    logit_scale: float | torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """ZSCL's term: KL of the teacher's and the student's CLIP logits on the same images.

    ``logits = logit_scale * normalize(embedding) @ text_embeddings.T`` for both; the value is
    ``KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch
    (:func:`~ldifs_lightning.regularizers.lwf.distillation_kl`), in float32.

    Args:
        student_embedding: ``[N, D]`` image embeddings of the trainable encoder (not normalised).
        teacher_embedding: ``[N, D]`` image embeddings of the pre-trained encoder (a constant).
        text_embeddings: ``[K, D]`` unit-norm class text embeddings.
        logit_scale: The multiplier of the cosine similarities (CLIP's ``logit_scale.exp()``).
        temperature: ``T > 0``.

    Example:
        >>> texts = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
        >>> images = torch.randn(2, 4)
        >>> zscl_distillation(images, images, texts, 100.0, 2.0).item()
        0.0
    """
    weight = text_embeddings * logit_scale
    student = head_logits(student_embedding, weight)
    teacher = head_logits(teacher_embedding.detach(), weight)
    return distillation_kl(student, teacher, temperature)


def _reference_info(reference_dataset: str) -> DatasetInfo:
    """The registry entry of ZSCL's reference data, or a one-line error naming the choices."""
    if not isinstance(reference_dataset, str) or not reference_dataset:
        raise ValueError(
            f"ZSCL needs reference_dataset: a registered dataset {list_datasets()} or "
            f"folder:PATH, got {reference_dataset!r}"
        )
    try:
        return get_dataset_info(reference_dataset)
    except ValueError as error:
        raise ValueError(f"ZSCL reference_dataset: {error}") from None


class ZSCL(Regularizer):
    """ZSCL's distillation on reference data, image-tower form (Zheng et al., ICCV 2023).

    Each training step draws ``batch_size`` images from a fixed, seeded subset of
    ``num_images`` images of the train split of ``reference_dataset`` (the eval transform at the
    encoder's image size). The frozen pre-trained encoder (teacher) and the trainable encoder
    (student) both embed them; their CLIP logits against the class captions' text embeddings
    (made once, when bound, by the **pre-trained** text tower) are compared with
    ``KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch
    (:func:`zscl_distillation`).

    The teacher is always the pre-trained encoder: :meth:`start_task` leaves it as bound. The
    draw of a step depends only on ``(seed, step.global_step)``, so a resumed fit draws what the
    uninterrupted one did (every rank draws the same images under DDP). The images are read and
    transformed on each step, in the training process. The text embeddings and the pre-trained
    logit scale are buffers, so checkpoints hold them; a module loaded from a checkpoint does
    not rebuild CLIP, and reads the reference images only when it trains.

    Args:
        reference_dataset: A registered dataset (e.g. ``imagenet``, ``demo-mix``) or
            ``folder:PATH``; its train split gives the images, its class names the texts.
        weight: lambda, the weight of the term.
        temperature: T of the softened probabilities.
        batch_size: Reference images per training step (all of them when there are fewer).
        num_images: Size of the seeded subset of the train split; None uses all of it.
        templates: Prompt templates with one ``{}``; None uses the dataset's own.
        root: Where the dataset's files are (as for the fine-tuning data).
        seed: Seed of the subset and of the per-step draws.
        checkpoint_reference: ``auto``: checkpoints leave the teacher out when it is
            rebuildable from ``model_name`` / ``pretrained``; ``always``: checkpoints hold it.

    Example:
        >>> from ldifs_lightning.models import create_clip
        >>> encoder = create_clip("ldifs-tiny-vit", "demo").visual
        >>> zscl = ZSCL("shapes", num_images=16, batch_size=4)
        >>> zscl.bind(encoder, EncoderSource("ldifs-tiny-vit", "demo"))
        >>> tuple(zscl.text_embeddings.shape)
        (8, 32)
        >>> step = TrainingStep(torch.randn(2, 3, 32, 32), torch.zeros(2), encoder)
        >>> zscl.before_forward(step)
        >>> zscl(step).item()
        0.0
    """

    name = "zscl"
    text_embeddings: torch.Tensor
    logit_scale: torch.Tensor

    def __init__(
        self,
        reference_dataset: str,
        weight: float = 1.0,
        temperature: float = 2.0,
        batch_size: int = 64,
        num_images: int | None = 1000,
        templates: list[str] | None = None,
        root: str = "data",
        seed: int = 0,
        checkpoint_reference: CheckpointReference = "auto",
    ) -> None:
        super().__init__(weight)
        check_temperature("ZSCL", temperature)
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"ZSCL: batch_size={batch_size} must be at least 1 image")
        if num_images is not None and not (isinstance(num_images, int) and num_images >= 1):
            raise ValueError(
                f"ZSCL: num_images={num_images} must be at least 1, or null for the whole split"
            )
        if checkpoint_reference not in ("auto", "always"):
            raise ValueError(
                f"checkpoint_reference={checkpoint_reference!r} is not one of ['auto', 'always']"
            )
        info = _reference_info(reference_dataset)
        if not info.classnames:
            raise ValueError(
                f"ZSCL needs reference texts: dataset {reference_dataset!r} has no class names; "
                "choose a dataset with class names (e.g. imagenet)"
            )
        if templates is not None:
            check_templates(templates)
        self.reference_dataset = reference_dataset
        self.temperature = float(temperature)
        self.batch_size = batch_size
        self.num_images = num_images
        self.templates = None if templates is None else list(templates)
        self.root = root
        self.seed = seed
        self.checkpoint_reference = checkpoint_reference
        self._info = info
        self.teacher: FrozenCopy | None = None
        self.register_buffer("text_embeddings", torch.zeros(0, 0))
        self.register_buffer("logit_scale", torch.tensor(0.0))
        self._images: Dataset | None = None
        self._image_size: int | None = None
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def captions_templates(self) -> list[str]:
        """The templates the class captions are made with."""
        return list(self.templates) if self.templates is not None else list(self._info.templates)

    def bind(self, encoder: nn.Module, source: EncoderSource) -> None:
        """Copy the pre-trained encoder, embed the captions and read the reference images.

        When ``source.weights_later`` (loading a checkpoint) the captions' embeddings come from
        the checkpoint and the images are read when training first needs them.
        """
        self.teacher = FrozenCopy(encoder, source, self.checkpoint_reference)
        self._image_size = image_size_of(encoder)
        if source.weights_later:
            return
        if source.pretrained is None:
            raise ValueError(
                "ZSCL embeds its reference texts with the pre-trained text tower, but "
                "pretrained=None has none (random weights); give pretrained weights"
            )
        self._images = self._load_images()
        device = next(encoder.parameters()).device
        clip = create_clip(source.model_name, source.pretrained, source.quick_gelu).to(device)
        embeddings = zero_shot_class_embeddings(
            clip, get_tokenizer(source.model_name), self._info.classnames, self.captions_templates
        )
        self.text_embeddings = embeddings.to(device)
        self.logit_scale = logit_scale_of(clip).detach().exp().float().to(device)

    def _load_images(self) -> Dataset:
        """The seeded subset of the reference train split, as transformed image tensors."""
        try:
            official = self._info.load(Path(self.root), "train", False)
        except (OSError, ValueError, RuntimeError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"ZSCL reference_dataset={self.reference_dataset!r}: cannot read its train split "
                f"under root={self.root!r} ({first_line})"
            ) from None
        size = dataset_length(official)
        if size == 0:
            raise ValueError(
                f"ZSCL reference_dataset={self.reference_dataset!r} has no training images"
            )
        indices = list(range(size))
        if self.num_images is not None and self.num_images < size:
            generator = torch.Generator().manual_seed(self.seed)
            indices = sorted(torch.randperm(size, generator=generator)[: self.num_images].tolist())
        assert self._image_size is not None
        return _Images(official, indices, eval_transform(self._image_size))

    @property
    def images(self) -> Dataset:
        """The reference images (read on first use after loading from a checkpoint)."""
        if self.teacher is None:
            raise RuntimeError("ZSCL is not bound to an encoder: call bind() first")
        if self._images is None:
            self._images = self._load_images()
        return self._images

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A module built for load_from_checkpoint has empty text embeddings: take the stored shape.
        stored = state_dict.get(prefix + "text_embeddings")
        if isinstance(stored, torch.Tensor) and stored.shape != self.text_embeddings.shape:
            self.text_embeddings = self.text_embeddings.new_empty(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reference_batch(self, global_step: int) -> torch.Tensor:
        """The reference images of the step after ``global_step`` optimizer steps, ``[B, 3, H, W]``.

        Drawn without replacement by a generator seeded with ``(seed, global_step)``.
        """
        images = self.images
        size = dataset_length(images)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + global_step) % (2**63))
        picks = torch.randperm(size, generator=generator)[: self.batch_size].tolist()
        return torch.stack([images[index] for index in picks])

    def before_forward(self, step: TrainingStep) -> None:
        """Draw the step's reference images and run the frozen pre-trained encoder on them."""
        if self.teacher is None:
            raise RuntimeError("ZSCL is not bound to an encoder: call bind() first")
        if self.text_embeddings.numel() == 0:
            raise RuntimeError(
                "ZSCL has no text embeddings: bind it with pretrained weights, or load them "
                "from a checkpoint"
            )
        images = self.reference_batch(step.global_step).to(
            device=step.images.device, dtype=step.images.dtype
        )
        self._batch = images, teacher_embedding(self.teacher.encoder, images)

    def forward(self, step: TrainingStep) -> torch.Tensor:
        batch, self._batch = self._batch, None
        if batch is None:
            raise RuntimeError("ZSCL.forward without before_forward on the same step")
        images, teacher = batch
        student = step.encoder(images)
        return zscl_distillation(
            student, teacher, self.text_embeddings, self.logit_scale, self.temperature
        )


class _Images(Dataset):
    """Image tensors of chosen samples of a ``(PIL image, label)`` dataset (labels dropped)."""

    def __init__(
        self,
        dataset: Dataset,
        indices: list[int],
        transform: Callable[[Any], torch.Tensor],
    ) -> None:
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        image, _ = self.dataset[self.indices[index]]
        return self.transform(image)
