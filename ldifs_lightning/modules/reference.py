"""The frozen pre-trained copy: low-precision storage, its checksum, and rebuilding it on load.

LDIFS runs a frozen copy of the pre-trained image encoder, L2SP reads its parameters. Two things
make that copy cheaper without changing what it computes:

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

import hashlib
import os
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from ldifs_lightning.models import create_clip
from ldifs_lightning.models.factory import uses_tag
from ldifs_lightning.pretrained import DEMO_TAG

ReferenceDtype = Literal["auto", "float32"]
CheckpointReference = Literal["auto", "always"]

#: Prefix of the frozen copy's entries in the module's state dict.
STATE_PREFIX = "reference_encoder."
#: Checkpoint entry describing the frozen copy: ``{"sha256": str | None, "stored": bool}``.
CHECKPOINT_KEY = "ldifs_reference"

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
        return create_clip(model_name, pretrained, quick_gelu).visual
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


def strip_reference(state_dict: dict[str, torch.Tensor]) -> None:
    """Remove the frozen copy's entries from a module state dict, in place."""
    for key in [k for k in state_dict if k.startswith(STATE_PREFIX)]:
        del state_dict[key]


def insert_reference(
    state_dict: dict[str, torch.Tensor], weights: Mapping[str, torch.Tensor]
) -> None:
    """Put an encoder's state dict into a module state dict as the frozen copy's entries."""
    state_dict.update({STATE_PREFIX + name: value for name, value in weights.items()})
