"""Capture intermediate features of an image encoder during one forward pass.

Every tap is returned in one canonical layout, ``[batch, positions, channels]``: ViT tokens as they
are (``[N, L, D]``), CNN maps ``[N, C, H, W]`` flattened to ``[N, H*W, C]``, vectors ``[N, C]`` as
``[N, 1, C]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn

# How many evenly spaced transformer blocks are tapped besides ln_pre (the reference code's
# 3, 6, 9, 12 of a 12-block ViT-B/32).
_VIT_BLOCK_TAPS = 4
_MAX_NAMES_IN_ERROR = 40


def default_tap_names(encoder: nn.Module) -> list[str]:
    """The default taps of an open_clip image encoder, which depend only on its depth.

    * ``VisionTransformer``: ``ln_pre`` plus the outputs of blocks at depths ``ceil(k * L / 4)``
      for ``k = 1..4`` (``L = 12`` gives blocks 3, 6, 9, 12, i.e. ``resblocks.2, .5, .8, .11``).
    * ``ModifiedResNet``: the stem (its last op, ``avgpool``) and ``layer1`` ... ``layer4``.

    Other encoders raise a ``ValueError`` listing module names that can be passed as taps.
    """
    if isinstance(encoder, VisionTransformer):
        depth = len(encoder.transformer.resblocks)
        blocks = sorted({math.ceil(k * depth / _VIT_BLOCK_TAPS) for k in range(1, 5)})
        return ["ln_pre", *(f"transformer.resblocks.{block - 1}" for block in blocks)]
    if isinstance(encoder, ModifiedResNet):
        return ["avgpool", "layer1", "layer2", "layer3", "layer4"]
    raise ValueError(
        f"no default taps for {type(encoder).__name__}; pass taps= with module names from: "
        f"{_tappable_names(encoder)}"
    )


def _tappable_names(encoder: nn.Module) -> str:
    names = [name for name, _ in encoder.named_modules() if name and name.count(".") <= 2]
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_NAMES_IN_ERROR else "")


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

    Args:
        encoder: The image encoder (e.g. ``clip.visual``).
        names: Module names as in ``encoder.named_modules()``; ``None`` uses
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
        self.names = list(names) if names is not None else default_tap_names(encoder)
        if not self.names:
            raise ValueError("taps is empty: give at least one module name, or null for defaults")
        modules = dict(encoder.named_modules())
        for name in self.names:
            if name not in modules or not name:
                raise ValueError(
                    f"tap {name!r} is not a module of {type(encoder).__name__}; valid names: "
                    f"{_tappable_names(encoder)}"
                )
        self._modules = [modules[name] for name in self.names]
        # open_clip transformers built with batch_first=False run blocks on [L, N, D].
        transformer = getattr(encoder, "transformer", None)
        sequence_first = transformer is not None and not getattr(transformer, "batch_first", True)
        self._sequence_first = [
            sequence_first and name.startswith("transformer.") for name in self.names
        ]
        self._outputs: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureTaps:
        self._outputs.clear()
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

    def _recorder(self, index: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            self._outputs[index] = output[0] if isinstance(output, tuple) else output

        return hook

    def features(self) -> list[torch.Tensor]:
        """The recorded taps, in the order of ``names``, each ``[N, P, C]``."""
        missing = [self.names[i] for i in range(len(self.names)) if i not in self._outputs]
        if missing:
            raise RuntimeError(f"taps {missing} were not reached by the forward pass")
        return [
            to_positions_channels(self._outputs[i], self._sequence_first[i])
            for i in range(len(self.names))
        ]
