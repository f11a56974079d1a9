"""LDIFS: l2 distance between fine-tuned and pre-trained intermediate features.

:func:`ldifs_distance` is the distance on lists of taps; :class:`LDIFS` is the regulariser that
owns the frozen pre-trained copy, runs it on each training batch and compares its taps with the
trainable encoder's.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from open_clip.transformer import PatchDropout
from torch import nn
from torch.autograd.function import once_differentiable

from ldifs_lightning.models.sharding import is_sharded, reshard
from ldifs_lightning.models.taps import FeatureTaps
from ldifs_lightning.regularizers.base import ReferenceRegularizer, TrainingStep
from ldifs_lightning.regularizers.frozen_copy import (
    CheckpointReference,
    EncoderSource,
    FrozenCopy,
    ReferenceDtype,
    autocast_dtype,
)

Normalize = Literal["token", "channel", "none"]
NORMALIZE_MODES: tuple[str, ...] = ("token", "channel", "none")


def check_normalize(normalize: str) -> None:
    """Raise a one-line error unless ``normalize`` is one of the three modes."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize={normalize!r} is not one of {list(NORMALIZE_MODES)}")


def _l2_norm(x: torch.Tensor, dim: int, contiguous_dim: bool) -> torch.Tensor:
    """The l2 norm of ``x`` over ``dim``, kept as a size-1 dim.

    ``torch.linalg.vector_norm`` is fast over a dim with stride 1 but 5-10x slower over a strided
    one (the positions of ViT tokens ``[N, P, C]``, i.e. ``"token"`` mode); there the square, a
    sum and a square root are faster. ``contiguous_dim`` is decided once per tap pair, so both
    sides use the same arithmetic and equal features give exactly zero.
    """
    if contiguous_dim:
        return torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return x.square().sum(dim=dim, keepdim=True).sqrt_()


def _difference(
    feature: torch.Tensor,
    reference: torch.Tensor,
    norm: torch.Tensor,
    ref_norm: torch.Tensor,
    in_place: bool,
) -> torch.Tensor:
    """``feature / norm - reference / ref_norm`` in two passes (norms already clamped).

    ``in_place`` writes it into ``reference``'s memory. Both orders give the same bits: each
    quotient is rounded once, and ``a - b`` is ``-b + a`` exactly.
    """
    if in_place:
        return reference.div_(ref_norm).neg_().addcdiv_(feature, norm)
    return torch.div(feature, norm).addcdiv_(reference, ref_norm, value=-1)


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _owns_its_storage(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` covers its whole storage exactly once (not a slice of a larger buffer,
    not expanded): only then may it be overwritten in place."""
    return tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()


def _keeps_graph() -> bool:
    """Whether the running backward keeps the graph (``retain_graph=True``): then the saved
    gradient may be needed again and must not be scaled in place. Private torch API; where it is
    missing, assume it does (out of place is always correct)."""
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if query is None else bool(query())


class _TapDistance(torch.autograd.Function):
    """Per-sample ``mean over p, c of (nrm(f) - nrm(r))^2`` of one tap, with a written-out gradient.

    The gradient of each sample's distance with respect to the tap, ``G``, does not depend on
    the backward's input (a per-sample scale), so it is computed in the forward, from the
    difference the value needs anyway, and kept alone until the backward: not the reference tap,
    nor the feature tap (the encoder usually keeps it, but not always), nor their
    norms. The backward only multiplies ``G`` by each sample's scale. Autograd through
    ``F.normalize``, the difference and the square would instead run about ten element-wise
    passes in the backward and keep the normalised difference alive from the forward on. ``dim``
    is the normalised axis, or ``None`` for no normalisation; the arithmetic runs in ``dtype``
    (float32 at least) and ``G`` is kept in the tap's dtype. With ``overwrite_reference`` the
    reference's memory is reused; ``compute_gradient`` is false under ``no_grad``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        feature: torch.Tensor,
        reference: torch.Tensor,
        dim: int | None,
        eps: float,
        dtype: torch.dtype,
        overwrite_reference: bool,
        compute_gradient: bool,
    ) -> torch.Tensor:
        f, r = feature.to(dtype), reference.to(dtype)
        # The difference goes into the reference's memory when the caller gives it up, or when
        # the cast made a copy; inference-mode tensors cannot be written outside inference mode.
        in_place = (overwrite_reference or r is not reference) and not r.is_inference()
        if dim is None:
            diff = r.neg_().add_(f) if in_place else f - r
        else:
            # F.normalize's arithmetic: x / max(||x||, eps).
            contiguous_dim = f.stride(dim) == 1
            norm = _l2_norm(f, dim, contiguous_dim)
            ref_norm = _l2_norm(r, dim, contiguous_dim).clamp_min_(eps)
            clamped = norm.clamp_min(eps)
            diff = _difference(f, r, clamped, ref_norm, in_place)
        count = f.shape[1] * f.shape[2]
        # The per-sample sum of squares without a tap-sized square: a norm over the sample.
        value = torch.linalg.vector_norm(diff, dim=(1, 2)).square_().div_(count)
        if not (compute_gradient and ctx.needs_input_grad[0]):
            return value
        # d/df of mean(diff^2) is 2 diff / (P C) times the Jacobian of the normalisation.
        scale = 2.0 / count
        if dim is None:
            gradient = diff.mul_(scale)
        else:
            # Jacobian of f / max(|f|, eps) applied to diff: (diff - f (f . diff) / |f|^2) / |f|
            # where |f| >= eps (there clamp_min passes its gradient), diff / eps below it.
            projection = (f * diff).sum(dim=dim, keepdim=True)
            along = projection.div_(clamped.square()).div_(clamped).mul_(scale)
            along = torch.where(norm >= eps, along, 0.0)
            gradient = diff.mul_(scale / clamped).addcmul_(f, along, value=-1)
        # Kept in the tap's own dtype (bf16 taps: half of float32's bytes).
        ctx.save_for_backward(gradient.to(feature.dtype))
        return value

    @staticmethod
    @once_differentiable  # the written-out backward is not itself differentiable
    def backward(
        ctx: Any, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None, None, None]:
        nothing = None, None, None, None, None, None
        if not ctx.needs_input_grad[0] or not ctx.saved_tensors:
            return None, *nothing
        (gradient,) = ctx.saved_tensors
        scale = grad_out.view(-1, 1, 1).to(gradient.dtype)
        # In place unless the graph is kept for another backward: no second tap-sized buffer.
        grad = gradient * scale if _keeps_graph() else gradient.mul_(scale)
        return grad, *nothing


def ldifs_distance(
    features: Sequence[torch.Tensor],
    reference: Sequence[torch.Tensor],
    normalize: Normalize = "token",
    eps: float = 1e-12,
    *,
    free_reference: bool = False,
) -> torch.Tensor:
    """LDIFS distance between two lists of taps, each ``[N, P, C]``.

    For each tap ``l``: ``d_l[n] = mean over p, c of (nrm(f_l)[n, p, c] - nrm(r_l)[n, p, c])^2``;
    the result is the mean over taps and then over the batch (a scalar). Squared, no square root.
    ``reference`` is treated as a constant (detached), so gradients flow only into ``features``.
    The computation runs in float32 for lower-precision taps (bf16 under autocast) and in float64
    for float64 taps.

    ``normalize`` chooses ``nrm``:

    * ``"token"`` (default): unit l2 norm over the P positions, for each channel. This is what the
      released reference code does (``F.normalize(dim=1)`` on ``[N, T, D]``) and what the paper's
      ``lambda = 10`` is calibrated for.
    * ``"channel"``: unit l2 norm over the C channels at each position, LPIPS-style, as the paper's
      text reads. Each normalised entry is then about ``1/sqrt(C)`` instead of ``1/sqrt(P)``, so the
      distance is roughly ``P / C`` times smaller than with ``"token"`` (e.g. 50 / 768 for
      ViT-B/32) and needs a correspondingly larger weight.
    * ``"none"``: raw features; the scale is that of the activations.

    ``free_reference=True`` gives the reference taps up to the function: ``reference`` must then be
    a list, whose entries it sets to ``None``, and each tap's memory is reused for its difference
    and gradient, so no tap-sized tensor is allocated beyond one gradient per tap (:class:`LDIFS`
    passes its own list this way). A tap is reused only when it is a whole buffer of its own (not
    shared with another tap, not a slice or an expanded view); the reference must not be needed
    again (e.g. by a recomputation under activation checkpointing).

    Zero vectors stay zero (division by ``max(norm, eps)``). Values and gradients are those of
    ``F.normalize`` followed by the squared difference's mean (up to float rounding); the gradient
    is written out and computed with the value, and only it is kept for the backward (one tensor
    the size of each tap).

    Example:
        >>> f = [torch.randn(2, 5, 8, requires_grad=True)]
        >>> ldifs_distance(f, [t.detach() for t in f]).item()
        0.0
    """
    check_normalize(normalize)
    if len(features) != len(reference):
        raise ValueError(
            f"got {len(features)} feature taps but {len(reference)} reference taps; "
            "they must pair up"
        )
    if not features:
        raise ValueError("no taps given: ldifs_distance needs at least one [N, P, C] tensor pair")
    dim = {"token": 1, "channel": 2, "none": None}[normalize]
    # A reference tap is overwritten only if no other tap shares its memory (two names for one
    # module's output, an Identity module's input and output).
    storages = Counter(_storage(t) for t in [*features, *reference])
    per_tap = []
    for index, feature in enumerate(features):
        ref = reference[index]
        if feature.dim() != 3 or feature.shape != ref.shape:
            raise ValueError(
                f"tap {index}: features {tuple(feature.shape)} and reference {tuple(ref.shape)} "
                "must have the same [N, P, C] shape"
            )
        if feature.shape[1] * feature.shape[2] == 0:
            raise ValueError(f"tap {index} has no positions or channels: {tuple(feature.shape)}")
        overwrite = free_reference and storages[_storage(ref)] == 1 and _owns_its_storage(ref)
        if free_reference:
            reference[index] = None  # type: ignore[index]  # freed once its gradient exists
        dtype = torch.promote_types(torch.promote_types(feature.dtype, ref.dtype), torch.float32)
        gradient = torch.is_grad_enabled() and feature.requires_grad
        per_tap.append(
            _TapDistance.apply(feature, ref.detach(), dim, eps, dtype, overwrite, gradient)
        )
        del ref
    return torch.stack(per_tap).mean(dim=0).mean()


@contextlib.contextmanager
def attention_fast_path_disabled() -> Iterator[None]:
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
def same_matmul_kernels(module: nn.Module) -> Iterator[None]:
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


def _refuse_patch_dropout(encoder: nn.Module) -> None:
    """Refuse a ViT that drops patch tokens in training (open_clip's or timm's ``PatchDropout``).

    The trainable encoder would drop a random subset of tokens while the frozen copy, in eval
    mode, keeps them all: their taps would not pair up (nor could they: the dropped tokens
    differ per step), and the run would fail at its first step.
    """
    from timm.layers import PatchDropout as TimmPatchDropout  # timm comes with open_clip

    for name, module in encoder.named_modules():
        if isinstance(module, PatchDropout | TimmPatchDropout) and module.prob > 0:
            raise ValueError(
                f"LDIFS compares the trainable encoder's tokens with the frozen copy's, but the "
                f"image encoder drops patch tokens in training ({name or 'encoder'}: "
                f"PatchDropout(prob={module.prob})); set the patch dropout to 0 in the model "
                "config (vision_cfg.patch_dropout for open_clip's ViTs)"
            )


class LDIFS(ReferenceRegularizer):
    """LDIFS: the distance between the trainable encoder's taps and a frozen pre-trained copy's.

    When bound, it copies the trainable encoder (the pre-trained weights) into a
    :class:`FrozenCopy`. Each step the copy runs first, under ``no_grad`` in eval mode with the
    same attention and matmul kernels as the trainable encoder (so identical weights give exactly
    0), and only its taps are kept; the trainable encoder's taps come from its one forward.

    Args:
        weight: lambda, the weight of the term (the reference code's default is 10).
        normalize: Feature normalisation: ``token`` (reference code), ``channel`` or ``none``
            (see :func:`ldifs_distance`).
        taps: Encoder module names whose outputs are compared; None uses the defaults
            (:func:`~ldifs_lightning.models.default_tap_names`).
        reference_dtype: How the copy stores its weights. ``auto``: under ``bf16-mixed`` /
            ``16-mixed`` its matrix and convolution weights are kept in the autocast dtype, which
            halves their memory; autocast rounds them to that dtype before every matmul anyway,
            so the value is unchanged. ``float32``: always float32.
        checkpoint_reference: ``auto``: checkpoints leave the copy out when it is rebuildable
            from ``model_name`` / ``pretrained`` (they store its sha256; loading rebuilds and
            checks it); ``always``: checkpoints hold it.

    Example:
        >>> from ldifs_lightning.models import create_clip
        >>> encoder = create_clip("ldifs-tiny-vit").visual
        >>> ldifs = LDIFS(weight=10.0)
        >>> ldifs.bind(encoder, EncoderSource("ldifs-tiny-vit", None))
        >>> step = TrainingStep(torch.randn(2, 3, 32, 32), torch.zeros(2), encoder)
        >>> ldifs.before_forward(step)
        >>> with FeatureTaps(encoder, ldifs.tap_names) as taps:
        ...     step.embedding = encoder(step.images)
        >>> step.features = dict(zip(ldifs.tap_names, taps.features()))
        >>> ldifs(step).item()
        0.0
    """

    name = "ldifs"

    def __init__(
        self,
        weight: float = 10.0,
        normalize: Normalize = "token",
        taps: list[str] | None = None,
        reference_dtype: ReferenceDtype = "auto",
        checkpoint_reference: CheckpointReference = "auto",
    ) -> None:
        super().__init__(weight)
        check_normalize(normalize)
        if reference_dtype not in ("auto", "float32"):
            raise ValueError(
                f"reference_dtype={reference_dtype!r} is not one of ['auto', 'float32']"
            )
        if checkpoint_reference not in ("auto", "always"):
            raise ValueError(
                f"checkpoint_reference={checkpoint_reference!r} is not one of ['auto', 'always']"
            )
        self.normalize = normalize
        self.taps = None if taps is None else list(taps)
        self.reference_dtype = reference_dtype
        self.checkpoint_reference = checkpoint_reference
        self.reference: FrozenCopy | None = None
        self._tap_names: list[str] = []
        self._reference_taps: list[torch.Tensor] | None = None

    def bind(self, encoder: nn.Module, source: EncoderSource) -> None:
        self._tap_names = FeatureTaps(encoder, self.taps).names  # validates the names early
        if any(self._tap_names):  # the root tap "" (LFL) is the pooled embedding: no tokens
            _refuse_patch_dropout(encoder)
        self.reference = FrozenCopy(encoder, source, self.checkpoint_reference)

    @property
    def tap_names(self) -> Sequence[str]:
        return self._tap_names

    def set_precision(self, precision: str) -> None:
        if self.reference is not None:
            target = autocast_dtype(precision) if self.reference_dtype == "auto" else None
            self.reference.set_autocast_dtype(target)

    def before_forward(self, step: TrainingStep) -> None:
        """Run the frozen copy on the images and keep its taps (its activations are freed)."""
        if self.reference is None:
            raise RuntimeError("LDIFS is not bound to an encoder: call bind() first")
        frozen = self.reference.encoder
        sharded = is_sharded(frozen)
        with (
            torch.no_grad(),
            attention_fast_path_disabled(),
            # Not under FSDP2: its parameter hooks look at requires_grad (untested there).
            contextlib.nullcontext() if sharded else same_matmul_kernels(frozen),
            FeatureTaps(frozen, self._tap_names) as ref_taps,
        ):
            frozen(step.images)
        if sharded:
            # An FSDP root keeps its own parameters gathered after its forward, expecting a
            # backward that never comes for the frozen copy: free them now.
            reshard(frozen)
        self._reference_taps = ref_taps.features()

    def forward(self, step: TrainingStep) -> torch.Tensor:
        reference, self._reference_taps = self._reference_taps, None
        if reference is None:
            raise RuntimeError("LDIFS.forward without before_forward on the same step")
        features = [step.features[name] for name in self._tap_names]
        return ldifs_distance(features, reference, self.normalize, free_reference=True)
