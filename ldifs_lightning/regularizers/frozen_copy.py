"""The frozen copy of an encoder that a regulariser compares against: :class:`FrozenCopy`.

LDIFS runs a frozen copy of the pre-trained image encoder, L2SP reads its parameters. Each holds a
:class:`FrozenCopy`: never trained, always in eval mode, outside the optimizer. Two things make
that copy cheaper without changing what it computes:

* **Storage in the autocast dtype.** Under ``bf16-mixed`` / ``16-mixed`` autocast already rounds
  every matrix and convolution weight to the low-precision dtype before its matmul, with the same
  round-to-nearest as ``Tensor.to``. :func:`cast_for_autocast` stores those weights (floating
  parameters with two or more dimensions) in that dtype once, and leaves 1-d parameters (norm
  scales and shifts, biases, class embeddings) and buffers in float32, because autocast runs
  normalisation in float32 with the float32 values. The frozen forward under autocast then sees
  the same numbers as with a float32 copy.
* **Checkpoints without it.** When the copy is rebuildable from ``model_name`` / ``pretrained``
  (an open_clip tag, ``demo`` or an existing file), a checkpoint can leave its weights out and
  store :func:`weights_sha256` of them instead; loading rebuilds the copy and checks the hash.

Example:
    >>> encoder = torch.nn.Linear(3, 2)
    >>> digest = weights_sha256(encoder)
    >>> cast_for_autocast(encoder, torch.bfloat16)
    >>> encoder.weight.dtype, encoder.bias.dtype
    (torch.bfloat16, torch.float32)
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn

from ldifs_lightning.models import create_clip
from ldifs_lightning.models.factory import uses_tag
from ldifs_lightning.models.sharding import is_sharded
from ldifs_lightning.pretrained import DEMO_TAG

ReferenceDtype = Literal["auto", "float32"]
CheckpointReference = Literal["auto", "always"]

#: Checkpoint entry describing each frozen copy, by its module name:
#: ``{name: {"sha256": str | None, "stored": bool}}``.
CHECKPOINT_KEY = "frozen_copies"

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype autocast runs matmuls in under a Lightning ``precision``; None without autocast.

    Example:
        >>> autocast_dtype("bf16-mixed"), autocast_dtype("32-true")
        (torch.bfloat16, None)
    """
    return _AUTOCAST_DTYPES.get(str(precision))


def _is_autocast_weight(tensor: torch.Tensor) -> bool:
    """Matrices, convolution kernels and embeddings: what autocast rounds before using."""
    return tensor.is_floating_point() and tensor.dim() >= 2


def cast_for_autocast(encoder: nn.Module, dtype: torch.dtype) -> None:
    """Store ``encoder``'s matrix and kernel weights in ``dtype``, in place.

    Parameters keep their identity (``.data`` is replaced), so hooks and references stay valid.
    1-d parameters and buffers are left as they are (see the module docstring).

    Example:
        >>> layer = torch.nn.Conv2d(3, 4, 3)
        >>> cast_for_autocast(layer, torch.float16)
        >>> layer.weight.dtype, layer.bias.dtype
        (torch.float16, torch.float32)
    """
    for parameter in encoder.parameters():
        if _is_autocast_weight(parameter):
            parameter.data = parameter.data.to(dtype)


def restore_float32(encoder: nn.Module, weights: Mapping[str, torch.Tensor] | None) -> None:
    """Undo :func:`cast_for_autocast`: exact ``weights`` when given, else an upcast of the stored.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> exact = {k: v.clone() for k, v in layer.state_dict().items()}
        >>> cast_for_autocast(layer, torch.bfloat16)
        >>> restore_float32(layer, exact)
        >>> torch.equal(layer.weight, exact["weight"])
        True
    """
    for name, parameter in encoder.named_parameters():
        if parameter.is_floating_point() and parameter.dtype != torch.float32:
            source = parameter.data if weights is None else weights[name]
            parameter.data = source.to(device=parameter.device, dtype=torch.float32)


def low_precision_dtype(encoder: nn.Module) -> torch.dtype | None:
    """The dtype :func:`cast_for_autocast` left the encoder's weights in; None when float32."""
    for parameter in encoder.parameters():
        if parameter.is_floating_point() and parameter.dtype != torch.float32:
            return parameter.dtype
    return None


def weights_sha256(weights: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 of a module's state dict, independent of device, dtype storage and memory layout.

    Keys are visited in sorted order; each contributes its name, its shape and its values as
    contiguous bytes, floating-point tensors converted to float32 first (integer buffers such as
    ``num_batches_tracked`` keep their dtype). Two copies hash alike exactly when every entry has
    the same name, shape and float32 value.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> weights_sha256(layer) == weights_sha256(layer.to(torch.float64))
        True
    """
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        tensor = tensor.cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def is_rebuildable(model_name: str, pretrained: str | None) -> bool:
    """Whether ``create_clip(model_name, pretrained)`` gives the same weights again later.

    True for an open_clip tag, ``demo`` and an existing file; False for random initialisation
    (``None``) and for ``hf-hub:`` / ``local-dir:`` models, whose weights are not named by
    ``pretrained``.

    Example:
        >>> is_rebuildable("ldifs-tiny-vit", "demo"), is_rebuildable("ldifs-tiny-vit", None)
        (True, False)
    """
    if pretrained is None or model_name.startswith(("hf-hub:", "local-dir:")):
        return False
    return pretrained == DEMO_TAG or os.path.isfile(pretrained) or uses_tag(model_name, pretrained)


def rebuild_reference(model_name: str, pretrained: str, quick_gelu: bool) -> nn.Module:
    """The pre-trained image encoder, built again from ``model_name`` / ``pretrained``.

    Raises the factory's one-line ``ValueError`` (e.g. a tag that needs a download while
    offline), prefixed with why the weights were needed.
    """
    try:
        return cast(nn.Module, create_clip(model_name, pretrained, quick_gelu).visual)
    except ValueError as error:
        raise ValueError(
            f"the checkpoint left out its frozen pre-trained copy, so it is rebuilt from "
            f"model_name={model_name!r}, pretrained={pretrained!r}, which failed ({error}); "
            "if the weights moved, pass their place: load_from_checkpoint(path, pretrained=...)"
        ) from None


def check_sha256(expected: str, found: str, model_name: str, pretrained: str | None) -> None:
    """Raise a one-line ``ValueError`` when a rebuilt copy's hash is not the stored one."""
    if expected != found:
        raise ValueError(
            f"the frozen pre-trained copy rebuilt from model_name={model_name!r}, "
            f"pretrained={pretrained!r} does not match the checkpoint (sha256 expected "
            f"{expected}, found {found}): those weights changed since training (another file or "
            "open_clip version); load the checkpoint where the original weights are, or re-save "
            "it there with the frozen copy included (checkpoint_reference='always')"
        )


@dataclass(frozen=True)
class EncoderSource:
    """Where a fine-tuning module's encoder weights came from: what a frozen copy is rebuilt from.

    Attributes:
        model_name: open_clip architecture.
        pretrained: open_clip tag, file path, ``demo`` or None (random init).
        quick_gelu: Whether the architecture was built with QuickGELU (OpenAI weights).
        weights_later: True while ``load_from_checkpoint`` builds the module: the encoder holds
            no pre-trained weights yet, they come from the checkpoint.
    """

    model_name: str
    pretrained: str | None
    quick_gelu: bool = False
    weights_later: bool = False

    @property
    def rebuildable(self) -> bool:
        """Whether the pre-trained weights can be built again (see :func:`is_rebuildable`)."""
        return is_rebuildable(self.model_name, self.pretrained)

    def rebuilt_weights(self, expected: str) -> Mapping[str, torch.Tensor]:
        """The pre-trained encoder's weights built again, checked against sha256 ``expected``."""
        if self.pretrained is None:
            raise ValueError(
                "the checkpoint left out its frozen pre-trained copy, but pretrained=None "
                "cannot rebuild it: pass the pretrained it was trained with, e.g. "
                "load_from_checkpoint(path, pretrained=...)"
            )
        rebuilt = rebuild_reference(self.model_name, self.pretrained, self.quick_gelu)
        check_sha256(expected, weights_sha256(rebuilt), self.model_name, self.pretrained)
        return rebuilt.state_dict()


class FrozenCopy(nn.Module):
    """A frozen copy of an encoder: no gradients, always in eval mode, outside the optimizer.

    Built from the trainable encoder when a regulariser is bound to it, so it starts as the
    pre-trained weights. While it holds weights rebuildable from its :class:`EncoderSource`, it
    knows their sha256, which lets checkpoints leave it out (``checkpoint="auto"``) and lets
    :meth:`exact` recover float32 weights after it was stored in low precision.

    Args:
        encoder: The encoder to copy (deep-copied).
        source: Where its weights came from; None when unknown (never rebuilt).
        checkpoint: ``auto``: checkpoints leave the weights out when they are rebuildable (they
            store the sha256 instead); ``always``: checkpoints always hold them.

    Example:
        >>> copy_ = FrozenCopy(torch.nn.Linear(3, 2))
        >>> copy_.train().training, copy_.encoder.weight.requires_grad
        (False, False)
    """

    encoder: nn.Module

    def __init__(
        self,
        encoder: nn.Module,
        source: EncoderSource | None = None,
        checkpoint: CheckpointReference = "auto",
    ) -> None:
        super().__init__()
        if checkpoint not in ("auto", "always"):
            raise ValueError(
                f"checkpoint_reference={checkpoint!r} is not one of ['auto', 'always']"
            )
        self.encoder = copy.deepcopy(encoder)
        self.encoder.requires_grad_(False)
        self.eval()
        self.source = source
        self.checkpoint = checkpoint
        # sha256 of the float32 weights while they are the rebuildable pre-trained ones (None:
        # unknown, random init or replaced). Hashed also with checkpoint="always": the hash is
        # what lets exact() recover the float32 weights after a low-precision fit.
        self.sha256: str | None = None
        if source is not None and not source.weights_later and source.rebuildable:
            self.sha256 = weights_sha256(self.encoder)

    def train(self, mode: bool = True) -> FrozenCopy:
        return super().train(False)  # never in train mode (dropout, BatchNorm statistics)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def set_autocast_dtype(self, target: torch.dtype | None) -> None:
        """Store matrices in ``target`` (None: float32), exactly restoring float32 first."""
        current = low_precision_dtype(self.encoder)
        if current == target:
            return
        if current is not None:  # an earlier low-precision fit: back to exact float32 first
            exact = None
            if self.sha256 is not None and self.source is not None:
                exact = self.source.rebuilt_weights(self.sha256)
            restore_float32(self.encoder, exact)
        if target is not None:
            cast_for_autocast(self.encoder, target)

    def exact(self) -> nn.Module:
        """The copy with float32 weights: itself, or a rebuilt (hash-checked) or upcast clone."""
        if is_sharded(self.encoder):
            raise ValueError(
                "the frozen copy is sharded (ModelParallelStrategy): WiSE-FT needs full weights; "
                "save a full checkpoint (save_distributed_checkpoint=False), load it on one "
                "device and interpolate there"
            )
        if low_precision_dtype(self.encoder) is None:
            return self.encoder
        encoder = copy.deepcopy(self.encoder)
        exact = None
        if self.sha256 is not None and self.source is not None:
            exact = self.source.rebuilt_weights(self.sha256)
        restore_float32(encoder, exact)
        return encoder

    def replace(self, weights: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Hold other weights exactly (e.g. a previous continual stage's); no longer rebuildable."""
        state = weights.state_dict() if isinstance(weights, nn.Module) else weights
        restore_float32(self.encoder, None)  # keep the new weights exactly
        self.encoder.load_state_dict(state)
        self.sha256 = None

    # -------------------------------------------------------------------- checkpoints
    def save_to(self, checkpoint: dict[str, Any], prefix: str) -> None:
        """Leave the weights out of ``checkpoint["state_dict"]`` when allowed; record how.

        ``prefix`` is this copy's ``encoder.`` prefix in the state dict. Sharded checkpoints
        are loaded into the module before :meth:`load_from` could put a rebuilt copy back, so
        there the copy is always stored (as shards, like the rest).
        """
        omit = self.checkpoint == "auto" and self.sha256 is not None and not is_sharded(self)
        if omit:
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(prefix)]:
                del state[key]
        entry = {"sha256": self.sha256, "stored": not omit}
        checkpoint.setdefault(CHECKPOINT_KEY, {})[prefix] = entry

    def load_from(self, checkpoint: dict[str, Any], prefix: str) -> None:
        """Put left-out weights back into ``checkpoint["state_dict"]`` (rebuilt, hash-checked)."""
        entry = checkpoint.get(CHECKPOINT_KEY, {}).get(prefix, {"sha256": None, "stored": True})
        if not entry["stored"]:
            state = checkpoint["state_dict"]
            if self.sha256 is not None:
                # Already holds the rebuildable weights, hashed at init (Trainer.fit(ckpt_path)),
                # possibly stored in low precision since.
                assert self.source is not None
                check_sha256(
                    entry["sha256"], self.sha256, self.source.model_name, self.source.pretrained
                )
                weights: Mapping[str, torch.Tensor] = self.encoder.state_dict()
            else:  # load_from_checkpoint: the copy was built without weights
                if self.source is None:
                    raise ValueError("the checkpoint left out a frozen copy that has no source")
                weights = self.source.rebuilt_weights(entry["sha256"])
            state.update({prefix + name: value for name, value in weights.items()})
        elif entry["sha256"] is not None and not is_sharded(self):
            # (a sharded checkpoint has no "state_dict" here: Lightning loads it into the module)
            entry = self._exact_stored(checkpoint["state_dict"], prefix, entry)
        self.sha256 = entry["sha256"]

    def _exact_stored(
        self, state: dict[str, torch.Tensor], prefix: str, entry: dict[str, Any]
    ) -> dict[str, Any]:
        """Make a stored copy that was rounded (saved after a low-precision fit) exact again.

        The stored entries are replaced by the exact pre-trained weights (the in-memory copy
        when it still holds them, else rebuilt and hash-checked). If they cannot be rebuilt
        (e.g. offline), the rounded copy is kept, with a warning, and no longer claims the hash.
        """
        stored = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if any(type(v) is not torch.Tensor for v in stored.values()):
            return entry  # sharded entries (DTensor): hashed nowhere, kept as they are
        if weights_sha256(stored) == entry["sha256"]:
            return entry
        in_memory_exact = (
            self.sha256 == entry["sha256"] and low_precision_dtype(self.encoder) is None
        )
        try:
            if in_memory_exact:
                weights: Mapping[str, torch.Tensor] = self.encoder.state_dict()
            elif self.source is None:
                raise ValueError("the frozen copy has no source to rebuild it from")
            else:
                weights = self.source.rebuilt_weights(entry["sha256"])
        except (ValueError, OSError, RuntimeError) as error:
            warnings.warn(
                "the checkpoint's frozen copy was stored in low precision and the exact "
                f"pre-trained weights could not be rebuilt ({error}); using the rounded copy",
                stacklevel=2,
            )
            return {**entry, "sha256": None}
        state.update({prefix + name: value for name, value in weights.items()})
        return entry
