"""What every fine-tuning module shares: the trainable encoder, its head and the regularisers.

:class:`CLIPFineTuner` holds a CLIP image encoder, a linear head on its l2-normalised embeddings
and zero or more :class:`~ldifs_lightning.regularizers.Regularizer` s, and runs the training step
they compose (see :mod:`ldifs_lightning.regularizers.base` for the order of calls). Subclasses
only choose the task loss: :class:`~ldifs_lightning.modules.FineTuneModule` (cross-entropy on the
head) and :class:`~ldifs_lightning.modules.FLYPModule` (contrastive, both towers). It also owns
the optimizer (AdamW over trainable parameters, warm-up + cosine per step), FSDP2 sharding and
the checkpoint handling of the regularisers' frozen copies.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import warnings
from collections.abc import Iterator, MutableMapping, Sequence
from functools import partial
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from lightning.pytorch.utilities.warnings import PossibleUserWarning
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
    sharding,
)
from ldifs_lightning.models.factory import embed_dim_of, uses_quick_gelu
from ldifs_lightning.modules.probe_head import fit_probe_head
from ldifs_lightning.modules.schedule import warmup_cosine_factor
from ldifs_lightning.regularizers import (
    EncoderSource,
    FrozenCopy,
    Regularizer,
    TrainingStep,
    build_regularizer,
    regularizer_spec,
)

HeadInit = Literal["zeroshot", "linear_probe", "random"]

# What Lightning says when configure_optimizers returns None (LP: nothing trains).
_NO_OPTIMIZER_WARNING = r"`LightningModule.configure_optimizers` returned `None`"

# Set while load_from_checkpoint builds the module: every weight then comes from the checkpoint,
# so pre-trained weights are not fetched and the head is not rebuilt from the text tower.
_WEIGHTS_FROM_CHECKPOINT = contextvars.ContextVar("weights_from_checkpoint", default=False)


@contextlib.contextmanager
def _weights_from_checkpoint() -> Iterator[None]:
    token = _WEIGHTS_FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FROM_CHECKPOINT.reset(token)


def _own_arguments(cls: type) -> set[str]:
    """Names of the arguments ``cls.__init__`` itself declares (not ``*args`` / ``**kwargs``)."""
    init = vars(cls).get("__init__")
    if init is None:
        return set()
    return {
        name
        for name, p in inspect.signature(init).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


class CLIPFineTuner(LightningModule):
    """Base of the fine-tuning modules: encoder, head, regularisers, optimizer, checkpoints.

    Not used directly: build a :class:`~ldifs_lightning.modules.FineTuneModule`,
    :class:`~ldifs_lightning.modules.LDIFSModule` or :class:`~ldifs_lightning.modules.FLYPModule`.
    Arguments are those of the subclasses; ``text_tower=True`` keeps CLIP's text tower trainable
    (FLYP) instead of using it only to build the zero-shot head.
    """

    image_encoder: nn.Module
    head: nn.Linear
    regularizers: nn.ModuleList
    head_ready: torch.Tensor
    initial_head_weight: torch.Tensor
    initial_head_bias: torch.Tensor
    #: Seed of LP-FT's probe (its held-out split); the subclasses that take ``seed`` set it.
    seed: int = 0

    def __init__(
        self,
        classnames: Sequence[str],
        templates: Sequence[str],
        model_name: str,
        pretrained: str | None,
        model_config: str | None,
        regularizers: Sequence[Regularizer | dict[str, Any]] | None,
        *,
        head_init: HeadInit,
        freeze_encoder: bool,
        lr: float,
        weight_decay: float,
        warmup_steps: int,
        text_batch_size: int,
        activation_checkpointing: bool,
        text_tower: bool,
    ) -> None:
        super().__init__()
        if not classnames:
            raise ValueError("classnames is empty: give one name per class of the task")
        check_templates(templates)
        if head_init not in ("zeroshot", "linear_probe", "random"):
            raise ValueError(
                f"head_init={head_init!r} is not one of ['zeroshot', 'linear_probe', 'random']"
            )
        if lr <= 0 or weight_decay < 0 or warmup_steps < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, warmup_steps >= 0; got lr={lr}, "
                f"weight_decay={weight_decay}, warmup_steps={warmup_steps}"
            )
        terms = [build_regularizer(spec) for spec in regularizers or ()]
        if freeze_encoder and terms:
            names = [type(term).__name__ for term in terms]
            raise ValueError(
                f"freeze_encoder=True (linear probing) keeps the encoder fixed, so the "
                f"regularisers {names} have nothing to do: remove them or unfreeze the encoder"
            )
        if model_config is not None:
            register_model_config(model_config)
        self._save_own_hyperparameters()
        self.classnames = list(classnames)
        self.templates = list(templates)
        self.model_name = model_name
        self.head_init = head_init
        self.freeze_encoder = freeze_encoder
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps

        from_checkpoint = _WEIGHTS_FROM_CHECKPOINT.get()
        # From a checkpoint the weights come later, but the architecture must match them.
        quick_gelu = uses_quick_gelu(model_name, pretrained)
        clip = create_clip(model_name, None if from_checkpoint else pretrained, quick_gelu)
        self.image_encoder = cast(nn.Module, clip.visual)
        embed_dim = embed_dim_of(clip)
        if from_checkpoint or head_init == "random":
            self.head = nn.Linear(embed_dim, len(self.classnames))
        else:
            self.head = build_zero_shot_head(
                clip, get_tokenizer(model_name), self.classnames, templates, text_batch_size
            )
        # Whether the head still needs its linear-probe initialisation (saved in checkpoints), and
        # the head as initialised: WiSE-FT interpolates towards it.
        self.register_buffer("head_ready", torch.tensor(head_init != "linear_probe"))
        self.register_buffer("initial_head_weight", self.head.weight.detach().clone())
        self.register_buffer("initial_head_bias", self.head.bias.detach().clone())

        self.encoder_source = EncoderSource(model_name, pretrained, quick_gelu, from_checkpoint)
        self.regularizers = nn.ModuleList(terms)
        for term in terms:  # before activation checkpointing: copies are not checkpointed
            if term.bound:
                raise ValueError(
                    f"this {type(term).__name__} already belongs to another module (it is bound "
                    "to that module's encoder); give each module its own regulariser instance"
                )
            term.bind(self.image_encoder, self.encoder_source)
            term.bound = True
        self._log_names = _log_names(terms)
        self.tap_names = list(dict.fromkeys(n for term in terms for n in term.tap_names))

        if activation_checkpointing:
            sharding.enable_activation_checkpointing(self.image_encoder, model_name)
        if text_tower:
            self._init_text_tower(clip, model_name)
        if freeze_encoder:
            # Fixed features: no gradients and eval mode (BatchNorm statistics too). Lightning
            # keeps each submodule's mode across its train/eval switches.
            self.image_encoder.requires_grad_(False)
            self.image_encoder.eval()
        del clip  # without FLYP the text tower is only needed for the head

        # The warnings filter added for the fit loop's eval-mode check (see on_fit_start), and
        # the one for Lightning's notice that LP's fit has no optimizer (see setup).
        self._eval_mode_filter: tuple | None = None
        self._no_optimizer_filter: tuple | None = None
        num_classes = len(self.classnames)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def _init_text_tower(self, clip: nn.Module, model_name: str) -> None:
        """Subclasses that train CLIP's text tower keep it here (FLYP)."""
        raise NotImplementedError

    def _save_own_hyperparameters(self) -> None:
        """Save exactly the concrete class's ``__init__`` arguments as hyper-parameters.

        ``save_hyperparameters`` collects the arguments of every ``__init__`` on the stack; the
        ones a subclass fixes (e.g. FLYP's head initialisation) are not its arguments, and
        ``load_from_checkpoint`` calls ``type(self)(**hparams)``. Regularisers are saved as
        ``{"class_path", "init_args"}`` dicts, so checkpoints load with ``weights_only=True``.
        """
        own = _own_arguments(type(self))
        every = set().union(*(_own_arguments(c) for c in type(self).__mro__))
        frame = inspect.currentframe()
        assert frame is not None and frame.f_back is not None
        self.save_hyperparameters(ignore=sorted(every - own), frame=frame.f_back)
        saved = (self.hparams, self._hparams_initial)
        for hparams in cast(tuple[MutableMapping[str, Any], ...], saved):
            if hparams.get("regularizers"):
                hparams["regularizers"] = [
                    regularizer_spec(r) if isinstance(r, Regularizer) else r
                    for r in hparams["regularizers"]
                ]

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Load a checkpoint with ``weights_only=True``.

        Called on ``CLIPFineTuner`` itself it loads whichever fine-tuner wrote the checkpoint
        (see :func:`fine_tuner_class`). Every weight comes from the checkpoint, so this works
        offline, except a frozen copy the
        checkpoint left out (``checkpoint_reference='auto'``): it is rebuilt from
        ``model_name`` / ``pretrained`` (from the local cache, the shipped ``demo`` or the file)
        and checked against the checkpoint's sha256.
        """
        kwargs.setdefault("weights_only", True)
        if cls is CLIPFineTuner:  # which fine-tuner: from the checkpoint's hyper-parameters
            hparams = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
            cls = fine_tuner_class(hparams.get("hyper_parameters", {}))
            return cls.load_from_checkpoint(checkpoint_path, *args, **kwargs)
        with _weights_from_checkpoint():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @property
    def probe_only(self) -> bool:
        """LP as the reference code runs it: the encoder is fixed and the head is the linear
        probe fitted at fit start (``freeze_encoder=True``, ``head_init="linear_probe"``).

        Nothing trains: there is no optimizer and the fit ends after the probe is fitted, before
        the first step. (The head keeps ``requires_grad``: DDP refuses a module without a
        parameter that does.)
        """
        return self.freeze_encoder and self.head_init == "linear_probe"

    @property
    def terms(self) -> list[Regularizer]:
        """The regularisers, in the order their terms are added to the loss."""
        return cast(list[Regularizer], list(self.regularizers))

    # ----------------------------------------------------------------------- frozen copies
    def _frozen_copies(self) -> list[tuple[str, FrozenCopy]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, FrozenCopy)]

    def _reference_copies(self) -> list[FrozenCopy]:
        """The regularisers' reference copies (LDIFS, L2SP), not teachers (LwF, ZSCL)."""
        return [c for c in (term.reference_copy for term in self.terms) if c is not None]

    @property
    def reference_encoder(self) -> nn.Module | None:
        """The first reference regulariser's (LDIFS, L2SP) frozen copy, or None."""
        copies = self._reference_copies()
        return copies[0].encoder if copies else None

    def pretrained_encoder(self) -> nn.Module:
        """The reference encoder with float32 weights (what WiSE-FT interpolates towards).

        The first reference regulariser's (LDIFS, L2SP) frozen copy when there is one (the
        pre-trained weights, or what :meth:`use_as_reference` put there; rebuilt and hash-checked
        after a low-precision fit); else the pre-trained encoder built from ``model_name`` /
        ``pretrained``.

        Example:
            >>> from ldifs_lightning import LDIFSModule
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.pretrained_encoder() is module.reference_encoder
            True
        """
        copies = self._reference_copies()
        if copies:
            return copies[0].exact()
        source = self.encoder_source
        clip = create_clip(source.model_name, source.pretrained, source.quick_gelu)
        return cast(nn.Module, clip.visual)

    def use_as_reference(self, weights: nn.Module | dict[str, torch.Tensor]) -> None:
        """Make every reference copy (LDIFS, L2SP) hold other weights (e.g. a previous stage's).

        Teachers are left alone: LwF's follows the continual stages, ZSCL's stays pre-trained.

        The copies are then no longer rebuildable, so every later checkpoint stores them.

        Example:
            >>> from ldifs_lightning import LDIFSModule
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.use_as_reference(module.image_encoder)
        """
        copies = self._reference_copies()
        if not copies:
            raise ValueError(
                "this module has no reference copy (no LDIFS or L2SP regulariser): add one to "
                "regularise towards a reference"
            )
        for frozen in copies:
            frozen.replace(weights)

    def set_reference_dtype(self, precision: str) -> None:
        """Tell every regulariser the Trainer's ``precision`` (LDIFS stores its copy in it).

        ``setup("fit")`` calls it; call it yourself when stepping the module without a Trainer.

        Example:
            >>> from ldifs_lightning import LDIFSModule
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.set_reference_dtype("bf16-mixed")
            >>> module.reference_encoder.conv1.weight.dtype
            torch.bfloat16
        """
        for term in self.terms:
            term.set_precision(str(precision))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, frozen in self._frozen_copies():
            frozen.save_to(checkpoint, f"{name}.encoder.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, frozen in self._frozen_copies():
            frozen.load_from(checkpoint, f"{name}.encoder.")

    # ----------------------------------------------------------------------- forward and steps
    @property
    def image_size(self) -> int:
        """Side of the square images the encoder expects."""
        return image_size_of(self.image_encoder)

    def train(self, mode: bool = True) -> CLIPFineTuner:
        super().train(mode)
        if self.freeze_encoder:
            self.image_encoder.eval()  # linear probing: fixed features (BatchNorm stats too)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits: the head applied to l2-normalised image embeddings."""
        return self.head(F.normalize(self.image_encoder(images), dim=-1))

    def task_loss(
        self, embedding: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The task loss and the logits (None when the loss has none) from the embeddings."""
        raise NotImplementedError

    def encode_step(self, step: TrainingStep) -> torch.Tensor:
        """One forward of the trainable encoder, with the regularisers' taps recorded."""
        for term in self.terms:
            term.before_forward(step)
        if not self.tap_names:
            return self.image_encoder(step.images)
        with FeatureTaps(self.image_encoder, self.tap_names) as taps:
            embedding = self.image_encoder(step.images)
        step.features = dict(zip(self.tap_names, taps.features(), strict=True))
        return embedding

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        step = TrainingStep(images, labels, self.image_encoder, self.head, self.global_step)
        step.embedding = self.encode_step(step)
        if any(term.needs_logits for term in self.terms):
            task_loss, step.logits = self.task_loss(step.embedding, labels)
            values = [term(step) for term in self.terms]
        else:
            # The terms first, then the task loss: the order in which their gradients add up in
            # the backward is then the one the shipped results were measured with.
            values = [term(step) for term in self.terms]
            task_loss, step.logits = self.task_loss(step.embedding, labels)
        loss = task_loss
        for term, value in zip(self.terms, values, strict=True):
            loss = loss + term.weight * value
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/task_loss", task_loss)
        self._log_task_loss(task_loss)
        for name, value in zip(self._log_names, values, strict=True):
            self.log(f"train/{name}", value)
        return loss

    def _log_task_loss(self, task_loss: torch.Tensor) -> None:
        """Log the task loss under its own name too (``train/ce`` for cross-entropy)."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for term in self.terms:
            term.after_optimizer_step(self.image_encoder)

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

    # ----------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        self.check_strategy(self.trainer.strategy, getattr(self.trainer, "callbacks", []))
        if stage == "fit":
            self.set_reference_dtype(str(self.trainer.precision))
            if self.probe_only:  # LP has no optimizer on purpose; on_fit_start removes this
                warnings.filterwarnings(
                    "ignore", message=_NO_OPTIMIZER_WARNING, category=UserWarning
                )
                self._no_optimizer_filter = warnings.filters[0]
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None:
            self.check_data(datamodule)

    def check_strategy(self, strategy: Any, callbacks: Sequence[Any] = ()) -> None:
        """Raise a one-line ``ValueError`` if this method cannot run under ``strategy``.

        FSDP1 (``strategy: fsdp``) and DeepSpeed are refused; Lightning's
        ``ModelParallelStrategy`` (FSDP2) runs the cross-entropy methods with
        ``tensor_parallel_size=1``, without LP-FT's probe head and without a
        ``WiSEFTCallback`` (it interpolates full weights). ``setup`` runs it; a command line can
        run it before the Trainer exists.

        Example:
            >>> from lightning.pytorch.strategies import DDPStrategy
            >>> from ldifs_lightning import LDIFSModule
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.check_strategy(DDPStrategy())
        """
        from lightning.pytorch.strategies import ModelParallelStrategy

        from ldifs_lightning.callbacks.wise_ft import WiSEFTCallback

        sharding.check_strategy(strategy, loss=self._strategy_loss_name, head_init=self.head_init)
        if isinstance(strategy, ModelParallelStrategy) and any(
            isinstance(callback, WiSEFTCallback) for callback in callbacks
        ):
            raise ValueError(
                "WiSEFTCallback does not run under ModelParallelStrategy (FSDP2): it interpolates "
                "full weights; fit sharded with save_distributed_checkpoint=False, then run "
                "WiSE-FT on the checkpoint on one device (ldifs_lightning.models.wise.wise_ft)"
            )

    #: The task loss's name in strategy checks (FLYP is not sharded).
    _strategy_loss_name = "cross_entropy"

    def configure_model(self) -> None:
        """Shard the encoder, the regularisers' frozen copies and the head with FSDP2.

        Under ``ModelParallelStrategy`` each transformer block (CNN stage) of every encoder is
        one FSDP unit, then each encoder's remaining parameters and the head; with other
        strategies this does nothing.
        """
        from lightning.pytorch.strategies import ModelParallelStrategy

        if not self._trainer or not isinstance(self.trainer.strategy, ModelParallelStrategy):
            return
        mesh = sharding.data_parallel_mesh(self.device_mesh)
        copies = [frozen.encoder for _, frozen in self._frozen_copies()]
        sharding.shard_modules([self.image_encoder, *copies, self.head], mesh)
        left = sharding.unsharded_parameters(self)
        if left:  # FSDP would not reduce their gradients across ranks
            raise RuntimeError(f"parameters left unsharded by configure_model: {left}")

    def check_data(self, datamodule: LightningDataModule) -> None:
        """Raise ``ValueError`` if ``datamodule`` does not fit this module (classes, image size).

        ``setup`` runs it; the ``ldifs`` command runs it before the Trainer exists, so a
        mismatch leaves no log directory behind.
        """
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is not None and num_classes != len(self.classnames):
            raise ValueError(
                f"the data has {num_classes} classes but the module got {len(self.classnames)} "
                "class names; pass the data's class names (LightningCLI links them for you)"
            )
        data_size = getattr(datamodule, "hparams", {}).get("image_size")
        if data_size is not None and data_size != self.image_size:
            raise ValueError(
                f"data image_size={data_size} but {self.model_name} expects "
                f"{self.image_size}; set data.image_size to {self.image_size}"
            )

    def on_fit_start(self) -> None:
        entry, self._no_optimizer_filter = self._no_optimizer_filter, None
        if entry is not None and entry in warnings.filters:
            cast(list, warnings.filters).remove(entry)
        if not bool(self.head_ready):
            fit_probe_head(self, self.trainer)
            self.head_ready.fill_(True)
            self.initial_head_weight.copy_(self.head.weight)
            self.initial_head_bias.copy_(self.head.bias)
        self._ignore_intended_eval_mode_warning()

    def on_validation_start(self) -> None:
        self._warn_if_probe_missing("validating")

    def on_test_start(self) -> None:
        self._warn_if_probe_missing("testing")

    def _warn_if_probe_missing(self, doing: str) -> None:
        """An evaluation before any fit would report the zero-shot head as LP / LP-FT's."""
        if not bool(self.head_ready):
            rank_zero_warn(
                f"{doing} with head_init='linear_probe' before the probe is fitted: the head is "
                "still the zero-shot one; fit first, or pass --ckpt_path of a fitted run"
            )

    def on_train_start(self) -> None:
        self._restore_eval_mode_warning()
        if self.probe_only:  # the head is final: no minibatch epochs (the loop checks this first)
            self.trainer.should_stop = True

    # ----------------------------------------------------------------------- warnings
    def _intended_eval_modules(self) -> int:
        """How many submodules stay in eval mode on purpose: frozen copies, LP's fixed encoder."""
        fixed: list[nn.Module] = [frozen for _, frozen in self._frozen_copies()]
        if self.freeze_encoder:
            fixed.append(self.image_encoder)
        return sum(len(list(module.modules())) for module in fixed)

    def _ignore_intended_eval_mode_warning(self) -> None:
        """Silence Lightning's "Found N module(s) in eval mode" when N is exactly ours.

        The fit loop warns between ``on_fit_start`` and ``on_train_start``, outside any hook, so
        one filter for that message with our exact count is added here and removed in
        ``on_train_start``: any other module left in eval mode changes N and still warns.
        """
        self._restore_eval_mode_warning()  # a fit that failed before on_train_start left one
        count = self._intended_eval_modules()
        if count == 0:
            return
        warnings.filterwarnings(
            "ignore",
            message=rf"Found {count} module\(s\) in eval mode at the start of training",
            category=PossibleUserWarning,
        )
        self._eval_mode_filter = warnings.filters[0]

    def _restore_eval_mode_warning(self) -> None:
        entry = self._eval_mode_filter
        filters = cast(list, warnings.filters)  # typeshed calls it a Sequence; it is a list
        if entry is not None and entry in filters:
            filters.remove(entry)
        self._eval_mode_filter = None

    # ----------------------------------------------------------------------- optimizer
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates (never a frozen copy's; a regulariser's own do)."""
        return [p for p in self.parameters() if p.requires_grad]

    def optimizer_parameters(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """What AdamW receives: the trainable parameters, or parameter groups.

        The cross-entropy modules give the plain list (one group, ``weight_decay`` everywhere);
        :class:`~ldifs_lightning.modules.FLYPModule` splits off ``logit_scale``.
        """
        return self.trainable_parameters()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig | None:
        """AdamW with warm-up + cosine per step; None when nothing trains (LP's probe head)."""
        if self.probe_only:
            return None
        optimizer = torch.optim.AdamW(
            self.optimizer_parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        total = float(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            partial(warmup_cosine_factor, warmup_steps=self.warmup_steps, total_steps=total),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _log_names(terms: Sequence[Regularizer]) -> list[str]:
    """``train/<name>`` keys, numbered when two regularisers share a name (``ldifs_1``, ...)."""
    names: list[str] = []
    for term in terms:
        name, index = term.name, 1
        while name in names:
            name, index = f"{term.name}_{index}", index + 1
        names.append(name)
    return names


def fine_tuner_class(hparams: dict[str, Any]) -> type[CLIPFineTuner]:
    """The fine-tuner class that saved ``hparams``: its ``_class_path`` (runs of the ``ldifs``
    command), else recognised by its arguments (modules built in Python)."""
    import importlib

    from ldifs_lightning.modules import FineTuneModule, FLYPModule, LDIFSModule
    from ldifs_lightning.modules.pretrain import CLIPPretrainModule

    class_path = hparams.get("_class_path")
    if isinstance(class_path, str):
        module_name, _, name = class_path.rpartition(".")
        found = getattr(importlib.import_module(module_name), name, None)
        if isinstance(found, type) and issubclass(found, CLIPFineTuner):
            return found
        raise ValueError(f"the checkpoint's module {class_path!r} is not a CLIPFineTuner")
    for cls in (LDIFSModule, FLYPModule, FineTuneModule, CLIPPretrainModule):
        if set(hparams) <= _own_arguments(cls):
            return cls
    raise ValueError(
        f"the checkpoint's hyper-parameters {sorted(hparams)[:8]} match no fine-tuning module "
        "(FineTuneModule, LDIFSModule, FLYPModule, CLIPPretrainModule)"
    )
