"""Capture intermediate features of an image encoder during one forward pass.

Every tap is returned in one canonical layout, ``[batch, positions, channels]``: ViT tokens as they
are (``[N, L, D]``), CNN maps ``[N, C, H, W]`` flattened to ``[N, H*W, C]``, vectors ``[N, C]`` as
``[N, 1, C]``. Default taps exist for open_clip's own towers and for its timm towers (``TimmModel``)
with ViT (SigLIP), Eva (EVA02) and ConvNeXt trunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer
from torch import nn

# How many evenly spaced transformer blocks are tapped besides the pre-block tokens (the reference
# code's 3, 6, 9, 12 of a 12-block ViT-B/32).
_VIT_BLOCK_TAPS = 4
_MAX_NAMES_IN_ERROR = 40


@dataclass(frozen=True)
class _Layout:
    """What a module of a known encoder family outputs: tokens ``[N, T, C]`` or a map
    ``[N, C, H, W]``, with ``channels`` channels."""

    kind: Literal["tokens", "map"]
    channels: int

    def matches(self, output: torch.Tensor) -> bool:
        if self.kind == "tokens":
            return output.dim() == 3 and output.shape[2] == self.channels
        return output.dim() == 4 and output.shape[1] == self.channels

    def describe(self) -> str:
        if self.kind == "tokens":
            return f"tokens [N, T, {self.channels}]"
        return f"an NCHW map [N, {self.channels}, H, W]"


@dataclass(frozen=True)
class _Family:
    """Default taps of a known encoder family and the layout of every module it knows."""

    defaults: list[str]
    layouts: dict[str, _Layout]


def _depth_rule(pre: str, block_prefix: str, depth: int) -> list[str]:
    """``pre`` plus the blocks at depths ``ceil(k * depth / 4)``, ``k = 1..4`` (0-based names)."""
    blocks = sorted({math.ceil(k * depth / _VIT_BLOCK_TAPS) for k in range(1, _VIT_BLOCK_TAPS + 1)})
    return [pre, *(f"{block_prefix}.{block - 1}" for block in blocks)]


def _token_family(pre: str, block_prefix: str, depth: int, width: int) -> _Family:
    names = [pre, *(f"{block_prefix}.{i}" for i in range(depth))]
    return _Family(
        _depth_rule(pre, block_prefix, depth), {name: _Layout("tokens", width) for name in names}
    )


def _open_clip_family(encoder: nn.Module) -> _Family | None:
    if isinstance(encoder, VisionTransformer):
        transformer = encoder.transformer
        return _token_family(
            "ln_pre", "transformer.resblocks", len(transformer.resblocks), transformer.width
        )
    if isinstance(encoder, ModifiedResNet):
        layouts = {"avgpool": _Layout("map", encoder.conv3.out_channels)}
        for index in range(1, 5):
            layer = getattr(encoder, f"layer{index}")
            layouts[f"layer{index}"] = _Layout("map", layer[-1].conv3.out_channels)
        return _Family(list(layouts), layouts)
    return None


def _timm_family(trunk: nn.Module) -> _Family | None:
    """Taps of a timm trunk, named relative to the trunk.

    ViT-like trunks (timm ``VisionTransformer``, SigLIP's included, and ``Eva``/EVA02) are tapped at
    ``norm_pre``, open_clip's ``ln_pre`` analogue: it is the first module whose input holds patch
    embeddings + position embeddings (+ class/register tokens, after patch dropout), always as
    ``[N, T, C]``, and is an ``Identity`` when the model has no pre-norm. ``patch_embed`` itself
    is not used: it lacks the position embedding and outputs NHWC maps when ``dynamic_img_size``
    is on. ConvNeXt trunks are tapped at the stem and each stage, all NCHW (their blocks go
    channels-last internally but always return NCHW).
    """
    # Imported here: timm is only needed (and only guaranteed installed) for timm towers.
    from timm.models.convnext import ConvNeXt
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer

    if isinstance(trunk, TimmVisionTransformer | Eva):
        return _token_family("norm_pre", "blocks", len(trunk.blocks), trunk.embed_dim)
    if isinstance(trunk, ConvNeXt):
        stem_convs = [m for m in trunk.stem.modules() if isinstance(m, nn.Conv2d)]
        layouts = {"stem": _Layout("map", stem_convs[-1].out_channels)}
        for index, info in enumerate(trunk.feature_info):
            channels = info["num_chs"]  # timm types feature_info as list[dict[str, object]]
            if not isinstance(channels, int):
                raise TypeError(f"timm feature_info[{index}] has num_chs={channels!r}, not an int")
            layouts[f"stages.{index}"] = _Layout("map", channels)
        return _Family(list(layouts), layouts)
    return None


def _family(encoder: nn.Module) -> _Family | None:
    if isinstance(encoder, TimmModel):
        family = _timm_family(encoder.trunk)
        if family is None:
            return None
        return _Family(
            [f"trunk.{name}" for name in family.defaults],
            {f"trunk.{name}": layout for name, layout in family.layouts.items()},
        )
    return _open_clip_family(encoder)


def _encoder_kind(encoder: nn.Module) -> str:
    if isinstance(encoder, TimmModel):
        return f"TimmModel (timm {type(encoder.trunk).__name__} trunk)"
    return type(encoder).__name__


def default_tap_names(encoder: nn.Module) -> list[str]:
    """The default taps of an open_clip image encoder, which depend only on its depth.

    * ``VisionTransformer``: ``ln_pre`` plus the outputs of blocks at depths ``ceil(k * L / 4)``
      for ``k = 1..4`` (``L = 12`` gives blocks 3, 6, 9, 12, i.e. ``resblocks.2, .5, .8, .11``).
    * ``ModifiedResNet``: the stem (its last op, ``avgpool``) and ``layer1`` ... ``layer4``.
    * ``TimmModel`` with a timm ``VisionTransformer`` (SigLIP) or ``Eva`` (EVA02) trunk:
      ``trunk.norm_pre`` (the ``ln_pre`` analogue) and ``trunk.blocks.{ceil(k * L / 4) - 1}``.
    * ``TimmModel`` with a timm ``ConvNeXt`` trunk: ``trunk.stem`` and ``trunk.stages.0`` ...
      ``trunk.stages.3``.

    Other encoders raise a ``ValueError`` listing module names that can be passed as taps.

    Example:
        >>> from ldifs_lightning.models import create_clip
        >>> default_tap_names(create_clip("ldifs-tiny-vit").visual)[:2]
        ['ln_pre', 'transformer.resblocks.0']
    """
    return _defaults(encoder, _family(encoder))


def _defaults(encoder: nn.Module, family: _Family | None) -> list[str]:
    if family is None:
        raise ValueError(
            f"no default taps for {_encoder_kind(encoder)}; pass taps= with module names from: "
            f"{_tappable_names(encoder)}"
        )
    return list(family.defaults)


def _submodule(encoder: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` in ``encoder`` (``""``: the encoder itself), or a one-line error
    listing valid names.

    ``get_submodule`` walks the dotted path; building ``dict(encoder.named_modules())`` instead
    would visit every module of the encoder on each of the two ``FeatureTaps`` built per step.
    """
    try:
        module: nn.Module | None = encoder.get_submodule(name)
    except AttributeError:
        module = None
    if module is None:
        raise ValueError(
            f"tap {name!r} is not a module of {type(encoder).__name__}; valid names: "
            f"{_tappable_names(encoder)}"
        )
    return module


def _tappable_names(encoder: nn.Module) -> str:
    names = [name for name, _ in encoder.named_modules() if name and name.count(".") <= 2]
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    shown += f", ... ({len(names)} in all)" if len(names) > _MAX_NAMES_IN_ERROR else ""
    return shown + ", or '' for the encoder's own output"


def to_positions_channels(output: torch.Tensor, sequence_first: bool = False) -> torch.Tensor:
    """Bring one tap's output into the ``[N, P, C]`` layout."""
    if output.dim() == 4:
        return output.flatten(2).transpose(1, 2)
    if output.dim() == 3:
        return output.transpose(0, 1) if sequence_first else output
    if output.dim() == 2:
        return output.unsqueeze(1)
    raise ValueError(f"cannot bring a tap output of shape {tuple(output.shape)} into [N, P, C]")


class FeatureTaps:
    """Context manager that records the outputs of named modules during a forward pass.

    Hooks are registered on entry and always removed on exit, also when the forward raises.
    :meth:`features` checks every tap against the batch size of the encoder's input, and taps of
    known families (see :func:`default_tap_names`) also against their expected layout and width,
    so a sequence-first or channels-last tensor is never silently read as ``[N, P, C]``.

    Args:
        encoder: The image encoder (e.g. ``clip.visual``).
        names: Module names as in ``encoder.named_modules()``; ``""`` is the encoder itself
            (its output embedding ``[N, D]``, recorded as ``[N, 1, D]``); ``None`` uses
            :func:`default_tap_names`.

    Example:
        >>> from ldifs_lightning.models import create_clip
        >>> encoder = create_clip("ldifs-tiny-vit").visual
        >>> with FeatureTaps(encoder) as taps:
        ...     embedding = encoder(torch.randn(2, 3, 32, 32))
        >>> [tuple(f.shape) for f in taps.features()][:2]
        [(2, 17, 64), (2, 17, 64)]
    """

    def __init__(self, encoder: nn.Module, names: Sequence[str] | None = None) -> None:
        family = _family(encoder)
        self.names = list(names) if names is not None else _defaults(encoder, family)
        if not self.names:
            raise ValueError("taps is empty: give at least one module name, or null for defaults")
        self._encoder = encoder
        self._modules = [_submodule(encoder, name) for name in self.names]
        known = family.layouts if family is not None else {}
        self._layouts = [known.get(name) for name in self.names]
        # open_clip transformers built with batch_first=False run blocks on [L, N, D].
        transformer = getattr(encoder, "transformer", None)
        sequence_first = transformer is not None and not getattr(transformer, "batch_first", True)
        self._sequence_first = [
            sequence_first and name.startswith("transformer.") for name in self.names
        ]
        self._batch_size: int | None = None
        self._outputs: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureTaps:
        self._outputs.clear()
        self._batch_size = None
        self._handles.append(self._encoder.register_forward_pre_hook(self._record_batch_size))
        for index, module in enumerate(self._modules):
            self._handles.append(module.register_forward_hook(self._recorder(index)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc_type is not None:
            self._outputs.clear()

    def _record_batch_size(self, module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0:
            self._batch_size = args[0].shape[0]

    def _recorder(self, index: int) -> Callable[[nn.Module, tuple, torch.Tensor | tuple], None]:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            self._outputs[index] = output[0] if isinstance(output, tuple) else output

        return hook

    def _checked(self, index: int) -> torch.Tensor:
        """The recorded output of tap ``index`` in ``[N, P, C]``, or a one-line layout error."""
        name, output = self.names[index], self._outputs[index]
        layout = self._layouts[index]
        if layout is not None and not layout.matches(output):
            raise ValueError(
                f"tap {name!r} of {_encoder_kind(self._encoder)} output shape "
                f"{tuple(output.shape)}, expected {layout.describe()}: the module does not "
                "produce the layout its family should; pass taps= naming modules that output "
                "[N, T, C] tokens or NCHW maps"
            )
        features = to_positions_channels(output, self._sequence_first[index])
        if self._batch_size is not None and features.shape[0] != self._batch_size:
            raise ValueError(
                f"tap {name!r} output shape {tuple(output.shape)} does not start with the batch "
                f"size {self._batch_size} after conversion to [N, P, C] (got "
                f"{tuple(features.shape)}); tap modules whose outputs are batch-first tokens "
                "[N, T, C], NCHW maps or [N, C] vectors"
            )
        return features

    def features(self) -> list[torch.Tensor]:
        """The recorded taps, in the order of ``names``, each ``[N, P, C]``."""
        missing = [self.names[i] for i in range(len(self.names)) if i not in self._outputs]
        if missing:
            raise RuntimeError(f"taps {missing} were not reached by the forward pass")
        return [self._checked(i) for i in range(len(self.names))]
