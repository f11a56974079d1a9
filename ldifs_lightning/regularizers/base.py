"""What every regulariser is: a plain ``nn.Module`` added to the task loss with a weight.

A fine-tuning module (:class:`~ldifs_lightning.modules.FineTuneModule`) holds zero or more
regularisers. At every training step it

1. builds a :class:`TrainingStep` with the batch and the trainable encoder and calls each
   regulariser's :meth:`Regularizer.before_forward` (LDIFS runs its frozen copy here, before the
   trainable forward, so the copy's activations are freed first; L2SP reads the parameters here);
2. runs the trainable encoder **once**, recording the outputs of every module named by a
   regulariser's :attr:`Regularizer.tap_names` (forward hooks on the same forward);
3. fills in the step's embedding, logits and features and adds ``weight * regulariser(step)``
   to the task loss, logging the raw value as ``train/<name>``;
4. after the optimizer step calls :meth:`Regularizer.after_optimizer_step` (e.g. an EMA teacher).

In a continual run (:mod:`ldifs_lightning.continual`) every stage after the first builds a fresh
module, loads the previous stage's encoder into it and calls :meth:`Regularizer.start_task` with
a :class:`TaskContext` before its fit: LDIFS and L2SP move their reference there, LwF takes the
previous encoder and the earlier tasks' heads.

A regulariser is bound once to the trainable encoder (:meth:`Regularizer.bind`) when the module is
built: that is where it builds what it owns (a :class:`~ldifs_lightning.regularizers.FrozenCopy`,
extra parameters). Parameters of its own that require grad join the optimizer; frozen copies
never do. It imports nothing from Lightning, so it can be used in any training loop.

Its constructor arguments must be stored as attributes of the same names: :func:`regularizer_spec`
reads them back, so checkpoints hold ``{"class_path", "init_args"}`` (loadable with
``weights_only=True``), never pickled objects.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ldifs_lightning.regularizers.frozen_copy import EncoderSource, FrozenCopy


@dataclass
class TrainingStep:
    """What a regulariser sees of one training step.

    ``embedding``, ``logits`` and ``features`` are None / empty in
    :meth:`Regularizer.before_forward` and filled in before :meth:`Regularizer.forward`
    (``logits`` only for a regulariser that sets ``needs_logits``).

    Attributes:
        images: The (augmented) training images.
        labels: Their labels.
        encoder: The trainable image encoder.
        head: The classification head applied to l2-normalised embeddings (None without one).
        global_step: The optimizer steps taken so far.
        embedding: The trainable encoder's output on ``images`` (not normalised).
        logits: The task logits (None when the task loss has none, e.g. FLYP's contrastive loss).
        features: Outputs of the modules named by the regularisers' ``tap_names``, ``[N, P, C]``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    encoder: nn.Module
    head: nn.Module | None = None
    global_step: int = 0
    embedding: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TaskContext:
    """What a regulariser is told when a continual stage after the first starts.

    Attributes:
        stage: Index of the stage about to train (1 for the second task, ...).
        reference: The encoder chosen as the reference of this stage (``reference: previous``,
            ``best_previous``), or None when it is the pre-trained encoder the regulariser was
            bound to (``reference: original``): then there is nothing to replace.
        previous: The previous stage's final image encoder.
        previous_heads: ``(weight, bias)`` of every earlier task's final head, in task order
            (heads act on l2-normalised embeddings).
    """

    stage: int
    reference: nn.Module | None
    previous: nn.Module
    previous_heads: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class Regularizer(nn.Module):
    """A term ``weight * value`` added to the task loss; subclasses define :meth:`forward`.

    Args:
        weight: Multiplier of the term in the loss; must be >= 0.

    Example:
        >>> class Sparsity(Regularizer):
        ...     name = "sparsity"
        ...     def forward(self, step):
        ...         return step.embedding.abs().mean()
        >>> term = Sparsity(weight=0.1)
        >>> step = TrainingStep(torch.zeros(2, 3), torch.zeros(2), torch.nn.Identity())
        >>> step.embedding = torch.tensor([[1.0, -1.0]])
        >>> term(step).item()
        1.0
    """

    #: Logged as ``train/<name>``; also the default name in messages.
    name: str = "regularizer"
    #: Whether :meth:`forward` reads ``step.logits`` (then the task loss runs before it).
    needs_logits: bool = False
    #: Set once a module has bound it to its encoder: an instance belongs to one module.
    bound: bool = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"{type(self).__name__}: weight={weight} must be >= 0")
        self.weight = float(weight)

    def bind(self, encoder: nn.Module, source: EncoderSource) -> None:
        """Called once with the trainable encoder, before training: build what the term needs.

        Args:
            encoder: The trainable image encoder (holding the pre-trained weights, unless
                ``source.weights_later``).
            source: Where those weights came from (to rebuild a frozen copy from).
        """

    @property
    def tap_names(self) -> Sequence[str]:
        """Modules of the trainable encoder whose outputs :meth:`forward` reads in ``features``."""
        return ()

    def before_forward(self, step: TrainingStep) -> None:
        """Called before the trainable encoder's forward (``embedding`` is still None)."""

    def forward(self, step: TrainingStep) -> torch.Tensor:
        """The raw (unweighted) value of the term for this step, a scalar."""
        raise NotImplementedError

    def start_task(self, context: TaskContext) -> None:
        """Called by a continual run before each stage after the first (see :class:`TaskContext`).

        The default keeps everything as bound (the pre-trained reference).
        """

    def after_optimizer_step(self, encoder: nn.Module) -> None:
        """Called after every optimizer step (e.g. to update an EMA teacher)."""

    def set_precision(self, precision: str) -> None:
        """Called when a fit starts with the Trainer's precision (e.g. ``bf16-mixed``)."""

    @property
    def reference_copy(self) -> FrozenCopy | None:
        """The frozen copy that is the module's *reference* (LDIFS, L2SP: what the term pulls
        towards, which :meth:`~ldifs_lightning.modules.CLIPFineTuner.use_as_reference` replaces
        and WiSE-FT interpolates towards); None for a term whose frozen copy is a teacher of its
        own (LwF: the previous stage; ZSCL: always the pre-trained encoder)."""
        return None

    def frozen_copies(self) -> list[nn.Module]:
        """Frozen encoders this term owns (sharded with the trainable encoder under FSDP2)."""
        from ldifs_lightning.regularizers.frozen_copy import FrozenCopy

        return [m.encoder for m in self.modules() if isinstance(m, FrozenCopy)]


class ReferenceRegularizer(Regularizer):
    """A term towards a reference encoder it holds as a :class:`FrozenCopy` in ``reference``
    (LDIFS, L2SP): built by :meth:`bind` from the pre-trained encoder, replaced by a continual
    stage's reference (:meth:`start_task`) or by ``module.use_as_reference``."""

    reference: FrozenCopy | None  # set in __init__ (None), then by bind; a submodule

    @property
    def reference_copy(self) -> FrozenCopy | None:
        return self.reference

    def start_task(self, context: TaskContext) -> None:
        """Continual runs: hold the stage's reference encoder (unchanged for ``original``)."""
        if self.reference is None:
            raise RuntimeError(
                f"{type(self).__name__} is not bound to an encoder: call bind() first"
            )
        if context.reference is not None:
            self.reference.replace(context.reference)


def regularizer_spec(regularizer: Regularizer) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of a regulariser, as a YAML config would name it.

    Example:
        >>> from ldifs_lightning.regularizers import L2SP
        >>> regularizer_spec(L2SP(weight=0.5))["init_args"]
        {'weight': 0.5, 'checkpoint_reference': 'auto'}
    """
    cls = type(regularizer)
    init_args = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not hasattr(regularizer, name):
            raise TypeError(
                f"{cls.__name__} must store its argument {name!r} as an attribute of that name "
                "(checkpoints rebuild regularisers from them)"
            )
        value = getattr(regularizer, name)
        init_args[name] = list(value) if isinstance(value, tuple) else value
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def build_regularizer(spec: Regularizer | dict[str, Any]) -> Regularizer:
    """A regulariser from itself or from ``{"class_path": ..., "init_args": {...}}``.

    Example:
        >>> spec = {"class_path": "ldifs_lightning.regularizers.L2SP", "init_args": {"weight": 0.5}}
        >>> build_regularizer(spec).weight
        0.5
    """
    if isinstance(spec, Regularizer):
        return spec
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(
            f"a regulariser must be a Regularizer or a dict with class_path, got {spec!r}"
        )
    module_name, _, class_name = str(spec["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"regulariser class_path {spec['class_path']!r} does not name an importable class; "
            "use e.g. ldifs_lightning.regularizers.LDIFS or ldifs_lightning.regularizers.L2SP"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Regularizer)):
        raise ValueError(
            f"regulariser class_path {spec['class_path']!r} is not a subclass of "
            "ldifs_lightning.regularizers.Regularizer"
        )
    return cls(**dict(spec.get("init_args") or {}))
