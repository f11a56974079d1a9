"""The fine-tuning LightningModule: LDIFS and the paper's baselines in one family.

A run is a task loss (cross-entropy, label-smoothed cross-entropy, FLYP contrastive, FLYP-CE) plus
at most one regulariser towards the pre-trained encoder (LDIFS in feature space, L2SP in parameter
space), a head initialisation (zero-shot, linear probe, random) and a choice of what trains (the
encoder + head, the head only, or both towers for FLYP). Each choice is a typed argument; the
module picks the matching method once, in ``__init__``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import warnings
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from open_clip import ClipLoss
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
from ldifs_lightning.models.factory import embed_dim_of, uses_quick_gelu
from ldifs_lightning.models.text_tower import TextTower, sample_captions
from ldifs_lightning.modules import reference, sharding
from ldifs_lightning.modules.probe_head import fit_probe_head
from ldifs_lightning.modules.reference import CheckpointReference, ReferenceDtype
from ldifs_lightning.modules.schedule import warmup_cosine_factor
from ldifs_lightning.regularizers import l2sp_penalty
from ldifs_lightning.regularizers.ldifs import check_normalize, ldifs_distance

TaskLoss = Literal["cross_entropy", "flyp", "flyp_ce"]
HeadInit = Literal["zeroshot", "linear_probe", "random"]
Trainable = Literal["encoder", "head", "both_towers"]

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
def _same_matmul_kernels(module: nn.Module) -> Iterator[None]:
    """Flag the frozen copy's parameters as requiring grad while it runs under ``no_grad``.

    ``torch.matmul`` folds a non-contiguous 3-d input into one ``mm`` only when the weight requires
    grad, else it runs a ``bmm``. ``nn.MultiheadAttention`` (batch_first) feeds its in-projection a
    transposed input, so without this the frozen copy's in-projection is ~4x slower on CPU and
    rounds differently from the trainable encoder's (LDIFS ~1e-15, not 0, at step 0 on ViT-B/32).
    Under ``no_grad`` the flag records nothing.
    """
    frozen = [p for p in module.parameters() if not p.requires_grad]
    # Autocast caches low-precision casts of float32 leaves that require grad until the outer
    # autocast exits; for the frozen copy that would hold a second copy of its weights.
    cache_enabled = torch.is_autocast_cache_enabled()
    torch.set_autocast_cache_enabled(False)
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
        torch.set_autocast_cache_enabled(cache_enabled)


def _check_literal(name: str, value: str, choices: Any) -> None:
    allowed = list(get_args(choices))
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")


def _check_choices(
    loss: str, trainable: str, head_init: str, ldifs_weight: float, l2sp_weight: float
) -> None:
    """One-line errors for option combinations that do not make a method."""
    if ldifs_weight > 0 and l2sp_weight > 0:
        raise ValueError(
            f"ldifs_weight={ldifs_weight} and l2sp_weight={l2sp_weight}: use at most one "
            "regulariser (set the other weight to 0)"
        )
    if trainable == "head" and (ldifs_weight > 0 or l2sp_weight > 0):
        raise ValueError(
            "trainable='head' (linear probing) keeps the encoder fixed, so a regulariser has "
            "nothing to do: set ldifs_weight and l2sp_weight to 0"
        )
    flyp = loss in ("flyp", "flyp_ce")
    if flyp != (trainable == "both_towers"):
        raise ValueError(
            f"loss={loss!r} with trainable={trainable!r}: FLYP losses (flyp, flyp_ce) train "
            "both towers and need trainable='both_towers'; other losses need 'encoder' or 'head'"
        )
    if flyp and head_init != "zeroshot":
        raise ValueError(
            f"head_init={head_init!r} with loss={loss!r}: FLYP classifies with the current text "
            "tower, so its head is always zero-shot (head_init='zeroshot')"
        )


class LDIFSModule(LightningModule):
    """Fine-tune a CLIP image encoder: task loss + ``ldifs_weight`` x LDIFS (or L2SP).

    By default this is LDIFS: cross-entropy on a zero-shot-initialised head plus ``ldifs_weight``
    times the LDIFS distance between the encoder's taps and those of a frozen copy of the
    pre-trained encoder (never trained, always in eval mode, outside the optimizer). The trainable
    encoder runs once per step: the taps are recorded with forward hooks on the same forward that
    produces the logits. Other options give the paper's baselines (see the README's table).

    Args:
        classnames: One human-readable name per class, in label order (LightningCLI links it from
            the DataModule).
        templates: Prompt templates with one ``{}`` each; the head averages over them.
        model_name: open_clip architecture, e.g. ``"ViT-B-32"`` or ``"ldifs-tiny-vit"``.
        pretrained: open_clip tag (``"openai"``), local checkpoint path, or null (random init).
        model_config: Optional path to a JSON model config (or folder of them) to register first.
        ldifs_weight: lambda, the weight of the LDIFS term; 0 disables it.
        normalize: Feature normalisation inside LDIFS: ``"token"`` (reference code, default),
            ``"channel"`` (LPIPS-style) or ``"none"``.
        taps: Encoder module names whose outputs LDIFS compares; null uses the defaults.
        l2sp_weight: alpha, the weight of ``sum ||theta - theta_0||^2`` over encoder parameters.
        loss: ``cross_entropy`` (with ``label_smoothing``), ``flyp`` (CLIP contrastive loss on
            class-templated captions) or ``flyp_ce`` (cross-entropy over class captions).
        label_smoothing: Label smoothing of the cross-entropy (LS baseline: 0.1).
        head_init: ``zeroshot`` (text embeddings), ``linear_probe`` (LP-FT: a probe fitted on the
            training set's features at fit start) or ``random``.
        trainable: ``encoder`` (encoder + head), ``head`` (linear probing, LP) or ``both_towers``
            (FLYP: image and text towers).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (applied to every trainable parameter).
        warmup_steps: Linear warm-up steps before the cosine decay.
        text_batch_size: Captions per batch when building the zero-shot head.
        seed: Seed of the FLYP caption sampling (with the global step).
        reference_dtype: How LDIFS's frozen copy stores its weights. ``auto``: under
            ``bf16-mixed`` / ``16-mixed`` (read from ``trainer.precision`` when fit starts) its
            matrix and convolution weights are kept in the autocast dtype, which halves their
            memory; autocast rounds them to that dtype before every matmul anyway, so the LDIFS
            value is unchanged. 1-d parameters (norms, biases) and buffers stay float32.
            ``float32``: always float32. L2SP's copy always stays float32: the penalty compares
            parameters, and bf16 rounding (up to 2^-9 relative) would outweigh early updates.
        checkpoint_reference: Whether checkpoints hold the frozen copy's weights. ``auto``: left
            out when ``pretrained`` names weights that can be built again (an open_clip tag,
            ``demo`` or an existing file); the checkpoint stores the sha256 of their float32
            values instead, and loading rebuilds the copy from ``model_name`` / ``pretrained``
            and checks it (a mismatch is a one-line ``ValueError``). Random init
            (``pretrained=None``) and a copy replaced with :meth:`use_as_reference` are always
            stored. ``always``: always stored. Under ``ModelParallelStrategy`` (FSDP2) the copy
            is always stored, sharded like the rest of the checkpoint.
        activation_checkpointing: Recompute the trainable encoder's transformer blocks in
            backward instead of keeping their activations (open_clip's per-block
            ``torch.utils.checkpoint``; less memory, about one more encoder forward per step).
            Transformer towers only; a ``ModifiedResNet`` fails with one line. Default false.

    Sharding: under Lightning's ``ModelParallelStrategy`` with ``tensor_parallel_size=1``,
    :meth:`configure_model` shards both encoders block by block and the head with FSDP2
    (``fully_shard``); see :mod:`ldifs_lightning.modules.sharding` for what is supported.

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
        l2sp_weight: float = 0.0,
        loss: TaskLoss = "cross_entropy",
        label_smoothing: float = 0.0,
        head_init: HeadInit = "zeroshot",
        trainable: Trainable = "encoder",
        lr: float = 1e-5,
        weight_decay: float = 0.1,
        warmup_steps: int = 500,
        text_batch_size: int = 256,
        seed: int = 0,
        reference_dtype: ReferenceDtype = "auto",
        checkpoint_reference: CheckpointReference = "auto",
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        for name, weight in [("ldifs_weight", ldifs_weight), ("l2sp_weight", l2sp_weight)]:
            if weight < 0:
                raise ValueError(f"{name}={weight} must be >= 0 (0 disables the regulariser)")
        check_normalize(normalize)
        if not classnames:
            raise ValueError("classnames is empty: give one name per class of the task")
        check_templates(templates)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        if lr <= 0 or weight_decay < 0 or warmup_steps < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, warmup_steps >= 0; got lr={lr}, "
                f"weight_decay={weight_decay}, warmup_steps={warmup_steps}"
            )
        _check_choices(loss, trainable, head_init, ldifs_weight, l2sp_weight)
        _check_literal("reference_dtype", reference_dtype, ReferenceDtype)
        _check_literal("checkpoint_reference", checkpoint_reference, CheckpointReference)
        if model_config is not None:
            register_model_config(model_config)
        self.save_hyperparameters()
        self.classnames = list(classnames)
        self.templates = list(templates)

        from_checkpoint = _WEIGHTS_FROM_CHECKPOINT.get()
        # From a checkpoint the weights come later, but the architecture must match them.
        quick_gelu = uses_quick_gelu(model_name, pretrained)
        clip = create_clip(model_name, None if from_checkpoint else pretrained, quick_gelu)
        self.image_encoder: nn.Module = clip.visual
        self.tap_names = FeatureTaps(self.image_encoder, taps).names  # validates names early
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

        # The frozen pre-trained encoder: LDIFS runs it, L2SP reads its parameters.
        self.reference_encoder: nn.Module | None = None
        # sha256 of the copy's float32 weights while they are the rebuildable pre-trained ones
        # (None: unknown, random init, or replaced): checkpoints may then leave the copy out.
        self._reference_sha256: str | None = None
        if ldifs_weight > 0 or l2sp_weight > 0:
            self.reference_encoder = copy.deepcopy(self.image_encoder)
            self.reference_encoder.requires_grad_(False)
            self.reference_encoder.eval()
            # Hashed whenever rebuildable (also with checkpoint_reference="always"): the hash is
            # what lets pretrained_encoder() recover exact weights after a low-precision fit.
            if not from_checkpoint and reference.is_rebuildable(model_name, pretrained):
                self._reference_sha256 = reference.weights_sha256(self.reference_encoder)

        if activation_checkpointing:  # after the copy: its no-grad forward stores nothing anyway
            sharding.enable_activation_checkpointing(self.image_encoder, model_name)

        self.text_tower: TextTower | None = None
        if trainable == "both_towers":
            self.text_tower = TextTower(clip, model_name)
            self.head.requires_grad_(False)  # FLYP classifies with the current text tower
        if trainable == "head":
            # Fixed features: no gradients and eval mode (BatchNorm statistics too). Lightning
            # keeps each submodule's mode across its train/eval switches.
            self.image_encoder.requires_grad_(False)
            self.image_encoder.eval()
        del clip  # without FLYP the text tower is only needed for the head

        self._task_loss = {
            "cross_entropy": self._cross_entropy,
            "flyp": self._flyp,
            "flyp_ce": self._flyp_ce,
        }[loss]
        # (name logged as train/<name>, weight, raw distance): at most one regulariser is active.
        self._penalty_name, self._penalty_weight, self._penalty = "ldifs", 0.0, None
        if ldifs_weight > 0:
            self._penalty_name, self._penalty_weight = "ldifs", ldifs_weight
            self._penalty = self._ldifs_distance
        elif l2sp_weight > 0:
            self._penalty_name, self._penalty_weight = "l2sp", l2sp_weight
            self._penalty = self._l2sp_distance
        # The warnings filter added for the fit loop's eval-mode check (see on_fit_start).
        self._eval_mode_filter: tuple | None = None
        num_classes = len(self.classnames)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> LDIFSModule:  # type: ignore[override]
        """Load a checkpoint with ``weights_only=True``.

        Every weight comes from the checkpoint, so this works offline, except a frozen copy the
        checkpoint left out (``checkpoint_reference='auto'``): it is rebuilt from
        ``model_name`` / ``pretrained`` (from the local cache, the shipped ``demo`` or the file)
        and checked against the checkpoint's sha256.
        """
        kwargs.setdefault("weights_only", True)
        with _weights_from_checkpoint():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ----------------------------------------------------------------------- frozen copy
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reference_encoder is None:
            return
        # Sharded checkpoints are loaded into the module before on_load_checkpoint could put a
        # rebuilt copy back, so there the copy is always stored (as shards, like the rest).
        omit = (
            self.hparams.checkpoint_reference == "auto"
            and self._reference_sha256 is not None
            and not sharding.is_sharded(self.reference_encoder)
        )
        if omit:
            reference.strip_reference(checkpoint["state_dict"])
        checkpoint[reference.CHECKPOINT_KEY] = {
            "sha256": self._reference_sha256,
            "stored": not omit,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reference_encoder is None:
            return
        # Checkpoints written before the copy could be left out hold it, with no hash.
        entry = checkpoint.get(reference.CHECKPOINT_KEY, {"sha256": None, "stored": True})
        if not entry["stored"]:
            hp = self.hparams
            if self._reference_sha256 is not None:
                # The copy already holds rebuildable pre-trained weights, hashed at init (e.g.
                # Trainer.fit(ckpt_path=...)), possibly stored in low precision since.
                reference.check_sha256(
                    entry["sha256"], self._reference_sha256, hp.model_name, hp.pretrained
                )
                weights = self.reference_encoder.state_dict()
            else:  # load_from_checkpoint: the copy was built without weights
                weights = self._rebuilt_reference_weights(entry["sha256"])
            reference.insert_reference(checkpoint["state_dict"], weights)
        elif entry["sha256"] is not None and not sharding.is_sharded(self.reference_encoder):
            entry = self._exact_stored_reference(checkpoint["state_dict"], entry)
        self._reference_sha256 = entry["sha256"]

    def _exact_stored_reference(
        self, state_dict: dict[str, torch.Tensor], entry: dict[str, Any]
    ) -> dict[str, Any]:
        """Make a stored copy that was rounded (saved after a low-precision fit) exact again.

        The stored entries are replaced by the exact pre-trained weights (the in-memory copy
        when it still holds them, else rebuilt and hash-checked). If they cannot be rebuilt
        (e.g. offline), the rounded copy is kept, with a warning, and no longer claims the hash.
        """
        prefix = reference.STATE_PREFIX
        stored = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if any(type(v) is not torch.Tensor for v in stored.values()):
            return entry  # sharded entries (DTensor): hashed nowhere, kept as they are
        if reference.weights_sha256(stored) == entry["sha256"]:
            return entry
        in_memory_exact = (
            self._reference_sha256 == entry["sha256"]
            and reference.low_precision_dtype(self.reference_encoder) is None
        )
        try:
            weights = (
                self.reference_encoder.state_dict()
                if in_memory_exact
                else self._rebuilt_reference_weights(entry["sha256"])
            )
        except (ValueError, OSError, RuntimeError) as error:
            warnings.warn(
                "the checkpoint's frozen copy was stored in low precision and the exact "
                f"pre-trained weights could not be rebuilt ({error}); using the rounded copy",
                stacklevel=2,
            )
            return {**entry, "sha256": None}
        reference.insert_reference(state_dict, weights)
        return entry

    def _rebuilt_reference_weights(self, expected: str) -> Mapping[str, torch.Tensor]:
        """The pre-trained encoder's weights built again, checked against ``expected``."""
        hp = self.hparams
        if hp.pretrained is None:
            raise ValueError(
                "the checkpoint left out its frozen pre-trained copy, but pretrained=None "
                "cannot rebuild it: pass the pretrained it was trained with, e.g. "
                "load_from_checkpoint(path, pretrained=...)"
            )
        quick_gelu = uses_quick_gelu(hp.model_name, hp.pretrained)
        rebuilt = reference.rebuild_reference(hp.model_name, hp.pretrained, quick_gelu)
        found = reference.weights_sha256(rebuilt)
        reference.check_sha256(expected, found, hp.model_name, hp.pretrained)
        return rebuilt.state_dict()

    def use_as_reference(self, weights: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Make the frozen copy hold other weights, e.g. a previous continual stage's encoder.

        The copy is then no longer rebuildable from ``model_name`` / ``pretrained``, so every
        later checkpoint stores it.

        Example:
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.use_as_reference(module.image_encoder)
        """
        if self.reference_encoder is None:
            raise ValueError(
                "this module has no frozen copy (ldifs_weight and l2sp_weight are 0): "
                "set one of them > 0 to regularise towards a reference"
            )
        state = weights.state_dict() if isinstance(weights, nn.Module) else weights
        # Back to float32 first, so the new weights are kept exactly (a later low-precision
        # fit casts again in setup).
        reference.restore_float32(self.reference_encoder, None)
        self.reference_encoder.load_state_dict(state)
        self._reference_sha256 = None

    def pretrained_encoder(self) -> nn.Module:
        """The frozen copy with its float32 weights (what WiSE-FT interpolates towards).

        The copy itself when it is float32. After a low-precision fit it is rebuilt from
        ``model_name`` / ``pretrained`` and checked against its sha256; a copy that cannot be
        rebuilt (random init, :meth:`use_as_reference`) is upcast from its stored values.

        Example:
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.pretrained_encoder() is module.reference_encoder
            True
        """
        if self.reference_encoder is None:
            raise ValueError("this module has no frozen copy (ldifs_weight and l2sp_weight are 0)")
        if sharding.is_sharded(self.reference_encoder):
            raise ValueError(
                "the frozen copy is sharded (ModelParallelStrategy): WiSE-FT needs full weights; "
                "save a full checkpoint (save_distributed_checkpoint=False), load it on one "
                "device and interpolate there"
            )
        if reference.low_precision_dtype(self.reference_encoder) is None:
            return self.reference_encoder
        encoder = copy.deepcopy(self.reference_encoder)
        exact = None
        if self._reference_sha256 is not None:
            exact = self._rebuilt_reference_weights(self._reference_sha256)
        reference.restore_float32(encoder, exact)
        return encoder

    def set_reference_dtype(self, precision: str) -> None:
        """Store the LDIFS copy in the autocast dtype of ``precision`` (``reference_dtype``).

        ``setup("fit")`` calls it with the Trainer's precision; call it yourself when stepping
        the module without a Trainer (as ``benchmarks/step_cost.py`` does).

        Example:
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.set_reference_dtype("bf16-mixed")
            >>> module.reference_encoder.conv1.weight.dtype
            torch.bfloat16
        """
        if self.reference_encoder is None:
            return
        target = None
        if self.hparams.reference_dtype == "auto" and self._penalty_name == "ldifs":
            target = reference.autocast_dtype(precision)
        current = reference.low_precision_dtype(self.reference_encoder)
        if current == target:
            return
        if current is not None:  # an earlier low-precision fit: back to exact float32 first
            exact = None
            if self._reference_sha256 is not None:
                exact = self._rebuilt_reference_weights(self._reference_sha256)
            reference.restore_float32(self.reference_encoder, exact)
        if target is not None:
            reference.cast_for_autocast(self.reference_encoder, target)

    @property
    def image_size(self) -> int:
        """Side of the square images the encoder expects."""
        return image_size_of(self.image_encoder)

    def train(self, mode: bool = True) -> LDIFSModule:
        super().train(mode)
        if self.reference_encoder is not None:
            self.reference_encoder.eval()  # the frozen copy is never put in train mode
        if self.hparams.trainable == "head":
            self.image_encoder.eval()  # linear probing: fixed features (BatchNorm stats too)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits: the head applied to l2-normalised image embeddings."""
        return self.head(F.normalize(self.image_encoder(images), dim=-1))

    # ----------------------------------------------------------------------- task losses
    def _cross_entropy(
        self, embedding: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(F.normalize(embedding, dim=-1))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        return loss, logits

    def _caption_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step)

    def _flyp(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, None]:
        captions = sample_captions(
            self.classnames, self.templates, labels, self._caption_generator()
        )
        text = self.text_tower.encode(captions)
        image = F.normalize(embedding, dim=-1)
        return self._contrastive_loss()(image, text, self.text_tower.logit_scale.exp()), None

    def _contrastive_loss(self) -> ClipLoss:
        """FLYP's CLIP loss for the current trainer's world size and rank.

        Built per step, not cached: a module reused in another fit (other devices, other rank)
        must gather over that fit's processes. Construction only stores a few attributes.
        """
        world = self.trainer.world_size if self._trainer else 1
        rank = self.trainer.global_rank if self._trainer else 0
        return ClipLoss(gather_with_grad=True, rank=rank, world_size=world)

    def _flyp_ce(
        self, embedding: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        every_class = torch.arange(len(self.classnames))
        captions = sample_captions(
            self.classnames, self.templates, every_class, self._caption_generator()
        )
        text = self.text_tower.encode(captions)
        logits = self.text_tower.logit_scale.exp() * F.normalize(embedding, dim=-1) @ text.T
        return F.cross_entropy(logits, labels), logits

    # ----------------------------------------------------------------------- regularisers
    def _reference_taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The frozen copy's taps on ``images`` (no gradients, eval mode)."""
        sharded = sharding.is_sharded(self.image_encoder)
        with (
            torch.no_grad(),
            _attention_fast_path_disabled(),
            # Not under FSDP2: its parameter hooks look at requires_grad (untested there).
            contextlib.nullcontext() if sharded else _same_matmul_kernels(self.reference_encoder),
            FeatureTaps(self.reference_encoder, self.tap_names) as ref_taps,
        ):
            self.reference_encoder(images)
        if sharded:
            # An FSDP root keeps its own parameters gathered after its forward, expecting a
            # backward that never comes for the frozen copy: free them now.
            sharding.reshard(self.reference_encoder)
        return ref_taps.features()

    def _ldifs_distance(self, reference: list[torch.Tensor], taps: FeatureTaps) -> torch.Tensor:
        return ldifs_distance(taps.features(), reference, self.hparams.normalize)

    def _l2sp_distance(self, images: torch.Tensor, taps: FeatureTaps | None) -> torch.Tensor:
        if sharding.is_sharded(self.image_encoder):
            # Both encoders' units sharded alike: the penalty is a sum of local shard terms
            # (all-reduced by full_value), and its gradient lands on the local shards.
            sharding.reshard(self.image_encoder)
            sharding.reshard(self.reference_encoder)
        penalty = l2sp_penalty(self.image_encoder.parameters(), self.reference_encoder.parameters())
        return sharding.full_value(penalty)

    # ----------------------------------------------------------------------- steps
    def _loss_terms(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and the raw regulariser value from one forward of the trainable encoder."""
        if self._penalty is None:
            return self.image_encoder(images), images.new_zeros(())
        if self._penalty_name != "ldifs":
            # L2SP reads the parameters before the forward, while sharded ones are all sharded.
            distance = self._penalty(images, None)
            return self.image_encoder(images), distance
        # The frozen copy runs first: its activations are freed before the trainable forward saves
        # its own for the backward, so of the frozen forward only its taps add to peak memory.
        reference = self._reference_taps(images)
        with FeatureTaps(self.image_encoder, self.tap_names) as taps:
            embedding = self.image_encoder(images)
        return embedding, self._penalty(reference, taps)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        embedding, distance = self._loss_terms(images)
        task_loss, _ = self._task_loss(embedding, labels)
        loss = task_loss + self._penalty_weight * distance
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/task_loss", task_loss)
        if self.hparams.loss == "cross_entropy":
            self.log("train/ce", task_loss)
        if self._penalty is not None:  # no constant train/ldifs = 0 in runs without a regulariser
            self.log(f"train/{self._penalty_name}", distance)
        return loss

    def _refresh_text_head(self) -> None:
        """FLYP: classify with the current text tower's zero-shot embeddings."""
        if self.text_tower is None:
            return
        embeddings = self.text_tower.class_embeddings(self.classnames, self.templates)
        with torch.no_grad():
            self.head.weight.copy_(self.text_tower.logit_scale.exp() * embeddings)
            self.head.bias.zero_()

    def on_validation_epoch_start(self) -> None:
        self._refresh_text_head()

    def on_train_end(self) -> None:
        self._refresh_text_head()  # callbacks' on_fit_end (WiSE-FT) and exports see the last step

    def on_test_epoch_start(self) -> None:
        self._refresh_text_head()

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
        self.check_strategy(self.trainer.strategy, self.trainer.callbacks)
        if stage == "fit":
            self.set_reference_dtype(str(self.trainer.precision))
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None:
            self.check_data(datamodule)

    def check_strategy(self, strategy: Any, callbacks: Sequence[Any] = ()) -> None:
        """Raise a one-line ``ValueError`` if this method cannot run under ``strategy``.

        FSDP1 (``strategy: fsdp``) and DeepSpeed are refused; Lightning's
        ``ModelParallelStrategy`` (FSDP2) runs the cross-entropy methods (FT, LS, LP, LDIFS,
        L2SP) with ``tensor_parallel_size=1``, without a ``WiSEFTCallback`` (it interpolates full
        weights). ``setup`` runs it; a command line can run it before the Trainer exists.

        Example:
            >>> from lightning.pytorch.strategies import DDPStrategy
            >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
            >>> module.check_strategy(DDPStrategy())
        """
        from lightning.pytorch.strategies import ModelParallelStrategy

        from ldifs_lightning.callbacks.wise_ft import WiSEFTCallback

        hp = self.hparams
        sharding.check_strategy(strategy, loss=hp.loss, head_init=hp.head_init)
        if isinstance(strategy, ModelParallelStrategy) and any(
            isinstance(callback, WiSEFTCallback) for callback in callbacks
        ):
            raise ValueError(
                "WiSEFTCallback does not run under ModelParallelStrategy (FSDP2): it interpolates "
                "full weights; fit sharded with save_distributed_checkpoint=False, then run "
                "WiSE-FT on the checkpoint on one device (ldifs_lightning.models.wise.wise_ft)"
            )

    def configure_model(self) -> None:
        """Shard both encoders and the head with FSDP2 under ``ModelParallelStrategy``.

        Each transformer block (CNN stage) of the trainable encoder and of the frozen copy is one
        FSDP unit, then each encoder's remaining parameters and the head; with other strategies
        this does nothing.
        """
        from lightning.pytorch.strategies import ModelParallelStrategy

        if not self._trainer or not isinstance(self.trainer.strategy, ModelParallelStrategy):
            return
        mesh = sharding.data_parallel_mesh(self.device_mesh)
        modules = [self.image_encoder, self.reference_encoder, self.head]
        sharding.shard_modules([m for m in modules if m is not None], mesh)
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
                f"data image_size={data_size} but {self.hparams.model_name} expects "
                f"{self.image_size}; set data.image_size to {self.image_size}"
            )

    def on_fit_start(self) -> None:
        if not bool(self.head_ready):
            fit_probe_head(self, self.trainer)
            self.head_ready.fill_(True)
            self.initial_head_weight.copy_(self.head.weight)
            self.initial_head_bias.copy_(self.head.bias)
        self._ignore_intended_eval_mode_warning()

    def on_train_start(self) -> None:
        self._restore_eval_mode_warning()

    # ----------------------------------------------------------------------- warnings
    def _intended_eval_modules(self) -> int:
        """How many submodules stay in eval mode on purpose: the frozen copy, LP's fixed encoder."""
        fixed = [self.reference_encoder] if self.reference_encoder is not None else []
        if self.hparams.trainable == "head":
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
        if entry is not None and entry in warnings.filters:
            warnings.filters.remove(entry)
        self._eval_mode_filter = None

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
