"""Sharding a fine-tuning module with FSDP2 (``fully_shard``) and activation checkpointing.

:class:`~lightning.pytorch.strategies.ModelParallelStrategy` is Lightning's FSDP2 strategy: the
module shards itself in ``configure_model``. Every transformer block (or CNN stage) of the
trainable encoder and of the frozen pre-trained copy becomes one FSDP unit, then each encoder's
remaining parameters and the head one more each. The frozen copy is sharded like the trainable
encoder, so no rank ever holds either in full outside the forward of one unit, and the optimizer,
built after sharding, only sees the trainable shards. Forward hooks (LDIFS's taps) still see
full activations: FSDP shards parameters, not activations.

``FSDPStrategy`` (FSDP1) and DeepSpeed are refused with one line (see :func:`check_strategy`).

Example:
    >>> from open_clip import create_model
    >>> encoder = create_model("ldifs-tiny-vit", pretrained=None).visual
    >>> [name for name, _ in shard_units(encoder)][:2]
    ['transformer.resblocks.0', 'transformer.resblocks.1']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import nn
from torch.distributed.tensor import DTensor

#: How to run a fine-tuning module sharded; every refusal below ends with it.
HOW_TO_SHARD = (
    "use --trainer.strategy lightning.pytorch.strategies.ModelParallelStrategy with "
    "--trainer.strategy.data_parallel_size <number of devices> "
    "--trainer.strategy.tensor_parallel_size 1 (FSDP2; see configs/scale/vit_l14_fsdp.yaml)"
)


def check_strategy(strategy: Any, *, loss: str, head_init: str) -> None:
    """Raise a one-line ``ValueError`` for a strategy/method combination that does not work.

    Supported: any single-device or DDP strategy with every method, and
    ``ModelParallelStrategy`` (FSDP2) with the cross-entropy methods (FT, LS, LP, LDIFS, L2SP,
    WiSE-FT's fine-tuning run without its callback) and a zero-shot or random head.

    Example:
        >>> from lightning.pytorch.strategies import SingleDeviceStrategy
        >>> check_strategy(SingleDeviceStrategy("cpu"), loss="cross_entropy", head_init="zeroshot")
    """
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    name = type(strategy).__name__
    if isinstance(strategy, FSDPStrategy):
        raise ValueError(
            f"strategy {name} (FSDP1, 'fsdp') is not supported by the fine-tuning modules: "
            "its flat parameters break the per-parameter pairing of L2SP and of the frozen "
            f"copy; {HOW_TO_SHARD}"
        )
    if isinstance(strategy, DeepSpeedStrategy):
        raise ValueError(
            f"strategy {name} is not supported by the fine-tuning modules; {HOW_TO_SHARD}"
        )
    if not isinstance(strategy, ModelParallelStrategy):
        return
    tensor_parallel = getattr(strategy, "_tensor_parallel_size", 1)
    if tensor_parallel not in (1, "auto") or (
        tensor_parallel == "auto" and strategy.num_processes > 1
    ):
        raise ValueError(
            f"ModelParallelStrategy with tensor_parallel_size={tensor_parallel}: LDIFSModule "
            f"shards with FSDP2 only (no tensor parallelism); {HOW_TO_SHARD}"
        )
    if loss != "cross_entropy":
        raise ValueError(
            "FLYPModule is not supported under ModelParallelStrategy (FSDP2): FLYP trains the "
            "text tower too, which is not sharded; use strategy ddp for FLYP"
        )
    if head_init == "linear_probe":
        raise ValueError(
            "head_init='linear_probe' (LP, LP-FT) is not supported under ModelParallelStrategy "
            "(FSDP2): fit the probe head with strategy ddp, or use head_init='zeroshot'"
        )


def shard_units(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks of an open_clip image tower that become one FSDP unit each, with their names.

    Transformer blocks for a ``VisionTransformer`` (``transformer.resblocks.*``), ``layer1`` ...
    ``layer4`` for a ``ModifiedResNet``, ``trunk.blocks.*`` or ``trunk.stages.*`` for timm
    towers; an unknown tower gives no units (it is then sharded as one unit).

    Example:
        >>> from open_clip import create_model
        >>> encoder = create_model("ldifs-tiny-rn", pretrained=None).visual
        >>> [name for name, _ in shard_units(encoder)]
        ['layer1', 'layer2', 'layer3', 'layer4']
    """
    for prefix in ("transformer.resblocks", "trunk.blocks", "trunk.stages"):
        try:
            container = encoder.get_submodule(prefix)
        except AttributeError:
            continue
        return [(f"{prefix}.{name}", block) for name, block in container.named_children()]
    return [
        (name, getattr(encoder, name))
        for name in ("layer1", "layer2", "layer3", "layer4")
        if isinstance(getattr(encoder, name, None), nn.Module)
    ]


def shard_modules(modules: Iterable[nn.Module], mesh: Any) -> None:
    """``fully_shard`` each encoder block by block (see :func:`shard_units`), then its root.

    Modules already sharded are left as they are (``configure_model`` runs again for every
    ``Trainer`` entry point).
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    for module in modules:
        if isinstance(module, FSDPModule):
            continue
        for _, unit in shard_units(module):
            fully_shard(unit, mesh=mesh)
        fully_shard(module, mesh=mesh)


def data_parallel_mesh(mesh: Any) -> Any:
    """The data-parallel dimension of ModelParallelStrategy's device mesh (one-line error if TP)."""
    if mesh.ndim == 1:
        return mesh
    tensor_parallel = mesh["tensor_parallel"].size()
    if tensor_parallel != 1:
        raise ValueError(
            f"ModelParallelStrategy with tensor_parallel_size={tensor_parallel}: LDIFSModule "
            f"shards with FSDP2 only (no tensor parallelism); {HOW_TO_SHARD}"
        )
    return mesh["data_parallel"]


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module``'s parameters are FSDP2 shards (``DTensor``).

    Example:
        >>> is_sharded(torch.nn.Linear(2, 2))
        False
    """
    return any(isinstance(p, DTensor) for p in module.parameters())


def unsharded_parameters(module: nn.Module) -> list[str]:
    """Names of parameters that are not shards (after sharding: those FSDP would not reduce)."""
    return [name for name, p in module.named_parameters() if not isinstance(p, DTensor)]


def reshard(module: nn.Module) -> None:
    """Register the sharded parameters of every FSDP unit in ``module`` (free gathered ones).

    An FSDP root keeps its own parameters gathered after its forward; reading parameters
    (L2SP) needs every unit in the same, sharded, state.
    """
    from torch.distributed.fsdp import FSDPModule

    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.reshard()


def full_value(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a possibly sharded one (a ``DTensor`` is all-reduced or gathered).

    Example:
        >>> full_value(torch.tensor(2.0))
        tensor(2.)
    """
    return value.full_tensor() if isinstance(value, DTensor) else value


def enable_activation_checkpointing(encoder: nn.Module, model_name: str) -> None:
    """Recompute the encoder's transformer blocks in backward instead of storing activations.

    Uses open_clip's own switch (``torch.utils.checkpoint`` per block, non-reentrant), so module
    names, state-dict keys and forward hooks are unchanged. One-line ``ValueError`` for towers
    open_clip cannot checkpoint (``ModifiedResNet``, some timm trunks).

    Example:
        >>> from open_clip import create_model
        >>> encoder = create_model("ldifs-tiny-vit", pretrained=None).visual
        >>> enable_activation_checkpointing(encoder, "ldifs-tiny-vit")
        >>> encoder.transformer.grad_checkpointing
        True
    """
    transformer = getattr(encoder, "transformer", None)
    if transformer is not None and hasattr(transformer, "grad_checkpointing"):
        # torch types a module's attributes as Tensor | Module; open_clip's is a method.
        cast(Callable[[bool], None], encoder.set_grad_checkpointing)(True)
        return
    trunk = getattr(encoder, "trunk", None)
    if trunk is not None and hasattr(trunk, "set_grad_checkpointing"):
        trunk.set_grad_checkpointing(True)
        if getattr(trunk, "grad_checkpointing", False):
            return
    raise ValueError(
        f"activation_checkpointing=True: the {type(encoder).__name__} image tower of "
        f"{model_name!r} does not support it (open_clip checkpoints transformer blocks only); "
        "set activation_checkpointing to false"
    )
