"""LwF (Li & Hoiem, 2016): earlier tasks' heads keep answering as the previous encoder made them.

:func:`distillation_kl` is the distillation term (also ZSCL's); :class:`LwF` is the regulariser
that holds the previous stage's encoder as its teacher and the earlier tasks' final heads.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ldifs_lightning.models.sharding import is_sharded, reshard
from ldifs_lightning.regularizers.base import Regularizer, TaskContext, TrainingStep
from ldifs_lightning.regularizers.frozen_copy import (
    CheckpointReference,
    EncoderSource,
    FrozenCopy,
)
from ldifs_lightning.regularizers.ldifs import attention_fast_path_disabled, same_matmul_kernels


def check_temperature(owner: str, temperature: float) -> None:
    """Raise a one-line error unless the distillation temperature is positive."""
    if not temperature > 0:
        raise ValueError(f"{owner}: temperature={temperature} must be > 0 (e.g. 2.0)")


def distillation_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))``, summed over classes, batch mean.

    The teacher is a constant (detached). The gradient with respect to the student equals that of
    the soft cross-entropy ``-sum softmax(teacher / T) log softmax(student / T)`` (the two differ
    by the teacher's entropy), but the KL is exactly 0 when the logits are equal. Computed in
    float32 (float64 stays float64).

    Args:
        student_logits: ``[N, K]``.
        teacher_logits: ``[N, K]``.
        temperature: ``T > 0``.

    Example:
        >>> logits = torch.tensor([[1.0, 2.0, 0.5]])
        >>> distillation_kl(logits, logits, 2.0).item()
        0.0
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same [N, K] shape"
        )
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    student = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True)


def teacher_embedding(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A frozen encoder's output under ``no_grad``, with the trainable encoder's kernels.

    (The attention and matmul kernels LDIFS uses, so identical weights give identical outputs.)
    """
    sharded = is_sharded(teacher)
    with (
        torch.no_grad(),
        attention_fast_path_disabled(),
        contextlib.nullcontext() if sharded else same_matmul_kernels(teacher),
    ):
        embedding = teacher(images)
    if sharded:
        reshard(teacher)  # as LDIFS: no backward comes to free the gathered parameters
    return embedding


def head_logits(
    embedding: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``normalize(embedding) @ weight.T + bias`` in float32, also under autocast."""
    with torch.autocast(embedding.device.type, enabled=False):
        normalized = F.normalize(embedding.float(), dim=-1)
        return F.linear(normalized, weight.float(), None if bias is None else bias.float())


class LwF(Regularizer):
    """LwF: distil the earlier tasks' head outputs from the previous stage's encoder.

    In a continual run, stage ``t > 0`` starts (:meth:`start_task`) with the previous stage's
    final encoder as the frozen teacher and the heads of tasks ``0 .. t-1``. On each training
    batch, for every old head ``h``, the teacher's logits ``h(normalize(teacher(x)))`` are
    distilled into the student's ``h(normalize(encoder(x)))``:
    ``value = sum over old heads of mean over the batch of KL(softmax(teacher / T) ||
    softmax(student / T))`` (:func:`distillation_kl`). The old heads are fixed: they are buffers,
    stored in checkpoints. Before any :meth:`start_task` (stage 0) there are no old heads and the
    value is 0.

    Args:
        weight: lambda_o, the weight of the term (LwF's default is 1).
        temperature: T of the softened probabilities (LwF uses 2).
        checkpoint_reference: ``auto``: checkpoints leave the teacher out while it is the
            rebuildable pre-trained encoder (stage 0); ``always``: checkpoints hold it. After
            :meth:`start_task` the teacher is a previous stage's and is always stored.

    Example:
        >>> encoder = torch.nn.Linear(3, 2)
        >>> lwf = LwF(weight=1.0, temperature=2.0)
        >>> lwf.bind(encoder, EncoderSource("ldifs-tiny-vit", None))
        >>> head = (torch.randn(4, 2), torch.zeros(4))
        >>> lwf.start_task(TaskContext(1, None, previous=encoder, previous_heads=[head]))
        >>> step = TrainingStep(torch.randn(5, 3), torch.zeros(5), encoder)
        >>> lwf.before_forward(step)
        >>> step.embedding = encoder(step.images)
        >>> lwf(step).item()
        0.0
    """

    name = "lwf"
    old_head_weight: torch.Tensor
    old_head_bias: torch.Tensor
    old_head_sizes: torch.Tensor

    def __init__(
        self,
        weight: float = 1.0,
        temperature: float = 2.0,
        checkpoint_reference: CheckpointReference = "auto",
    ) -> None:
        super().__init__(weight)
        check_temperature("LwF", temperature)
        if checkpoint_reference not in ("auto", "always"):
            raise ValueError(
                f"checkpoint_reference={checkpoint_reference!r} is not one of ['auto', 'always']"
            )
        self.temperature = float(temperature)
        self.checkpoint_reference = checkpoint_reference
        self.teacher: FrozenCopy | None = None
        # The old heads, concatenated: weight [sum K_t, D], bias [sum K_t], and each K_t.
        self.register_buffer("old_head_weight", torch.zeros(0, 0))
        self.register_buffer("old_head_bias", torch.zeros(0))
        self.register_buffer("old_head_sizes", torch.zeros(0, dtype=torch.long))
        self._teacher_logits: torch.Tensor | None = None

    @property
    def num_old_heads(self) -> int:
        """How many earlier tasks' heads are distilled (0 before :meth:`start_task`)."""
        return int(self.old_head_sizes.numel())

    def bind(self, encoder: nn.Module, source: EncoderSource) -> None:
        self.teacher = FrozenCopy(encoder, source, self.checkpoint_reference)

    def start_task(self, context: TaskContext) -> None:
        """The previous stage's encoder becomes the teacher; the earlier heads are distilled."""
        if self.teacher is None:
            raise RuntimeError("LwF is not bound to an encoder: call bind() first")
        self.teacher.replace(context.previous)
        device = self.old_head_weight.device
        heads = context.previous_heads
        for index, (weight, bias) in enumerate(heads):
            if weight.dim() != 2 or bias.shape != weight.shape[:1]:
                raise ValueError(
                    f"previous head {index}: weight {tuple(weight.shape)} and bias "
                    f"{tuple(bias.shape)} must be [K, D] and [K]"
                )
        if len({weight.shape[1] for weight, _ in heads}) > 1:
            raise ValueError(
                "the previous heads act on embeddings of different widths "
                f"{[tuple(w.shape) for w, _ in heads]}; they must share D"
            )
        if heads:
            self.old_head_weight = torch.cat([w.detach().float() for w, _ in heads]).to(device)
            self.old_head_bias = torch.cat([b.detach().float() for _, b in heads]).to(device)
        else:
            self.old_head_weight = torch.zeros(0, 0, device=device)
            self.old_head_bias = torch.zeros(0, device=device)
        sizes = [int(weight.shape[0]) for weight, _ in heads]
        self.old_head_sizes = torch.tensor(sizes, dtype=torch.long, device=device)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A module built fresh (load_from_checkpoint) never saw start_task: take the stored
        # heads' shapes before the copy.
        for name in ("old_head_weight", "old_head_bias", "old_head_sizes"):
            stored = state_dict.get(prefix + name)
            current = getattr(self, name)
            if isinstance(stored, torch.Tensor) and stored.shape != current.shape:
                setattr(self, name, current.new_empty(stored.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _old_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Every old head's logits on the l2-normalised embeddings, concatenated: ``[N, sum K]``."""
        return head_logits(embedding, self.old_head_weight, self.old_head_bias)

    def before_forward(self, step: TrainingStep) -> None:
        """Run the teacher on the images and keep its old-head logits."""
        if self.teacher is None:
            raise RuntimeError("LwF is not bound to an encoder: call bind() first")
        if self.num_old_heads == 0:
            self._teacher_logits = None
            return
        embedding = teacher_embedding(self.teacher.encoder, step.images)
        with torch.no_grad():
            self._teacher_logits = self._old_logits(embedding)

    def forward(self, step: TrainingStep) -> torch.Tensor:
        if step.embedding is None:
            raise RuntimeError("LwF.forward needs step.embedding (the trainable forward's output)")
        teacher, self._teacher_logits = self._teacher_logits, None
        if self.num_old_heads == 0:
            return step.embedding.new_zeros((), dtype=torch.float32)
        if teacher is None:
            raise RuntimeError("LwF.forward without before_forward on the same step")
        student = self._old_logits(step.embedding)
        sizes = self.old_head_sizes.tolist()
        terms = [
            distillation_kl(s, t, self.temperature)
            for s, t in zip(student.split(sizes, dim=1), teacher.split(sizes, dim=1), strict=True)
        ]
        return torch.stack(terms).sum()
