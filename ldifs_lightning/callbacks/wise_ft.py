"""WiSEFTCallback: evaluate weight-space interpolations with the pre-trained model at fit end."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ldifs_lightning.callbacks.forgetting import ConceptForgettingCallback, autocast_dtype_of
from ldifs_lightning.callbacks.trainer_attributes import trainer_callbacks, trainer_datamodule
from ldifs_lightning.evaluation.classification import classification_accuracy
from ldifs_lightning.evaluation.features import PrecisionEncoder
from ldifs_lightning.models import create_clip, image_encoder_of
from ldifs_lightning.models.wise import check_alpha, wise_ft
from ldifs_lightning.reporting.console import format_wiseft_table
from ldifs_lightning.reporting.csv_files import write_wiseft_csv
from ldifs_lightning.reporting.plots import plot_wiseft

T = TypeVar("T")


def _part(module: LightningModule, name: str, kind: type[T]) -> T:
    """``module.<name>``, checked to be a ``kind`` as in the package's fine-tuners."""
    value = getattr(module, name, None)
    if not isinstance(value, kind):
        raise ValueError(
            f"WiSEFTCallback needs {type(module).__name__}.{name} to be a {kind.__name__} (as "
            f"the package's fine-tuners have it), not {type(value).__name__}"
        )
    return value


def pretrained_parts(module: LightningModule) -> tuple[nn.Module, nn.Module]:
    """WiSE-FT's ``theta_0`` of a fine-tuner: the pre-trained encoder and the head as initialised
    (zero-shot or probe), on the module's device. ``WiSEFTCallback`` and ``ldifs compare`` use it.

    Example:
        >>> from ldifs_lightning import LDIFSModule
        >>> module = LDIFSModule(["a", "b"], model_name="ldifs-tiny-vit", pretrained=None)
        >>> encoder, head = pretrained_parts(module)
        >>> torch.equal(head.weight, module.initial_head_weight)
        True
    """
    pretrained_encoder = getattr(module, "pretrained_encoder", None)
    if callable(pretrained_encoder):  # the package's fine-tuners
        encoder: nn.Module = pretrained_encoder()  # exact float32 even after a bf16-mixed fit
    else:
        hparams = module.hparams
        encoder = image_encoder_of(create_clip(hparams["model_name"], hparams["pretrained"]))
    head = copy.deepcopy(_part(module, "head", nn.Linear))
    head.weight.data.copy_(_part(module, "initial_head_weight", torch.Tensor))
    head.bias.data.copy_(_part(module, "initial_head_bias", torch.Tensor))
    return encoder.to(module.device), head


def _check_pretrained(module: LightningModule) -> None:
    """Refuse a module without pre-trained weights: WiSE-FT would interpolate towards noise."""
    pretrained = module.hparams.get("pretrained")
    if pretrained is None:
        raise ValueError(
            "WiSEFTCallback interpolates towards the pre-trained weights, but the module has "
            "pretrained=None (random init, no pre-trained reference); set the module's pretrained "
            "(model.init_args.pretrained) to an open_clip tag or checkpoint path, or remove "
            "WiSEFTCallback"
        )


class WiSEFTCallback(Callback):
    """Evaluate WiSE-FT interpolations ``(1 - alpha) * theta_0 + alpha * theta`` at fit end.

    Encoder and head are both interpolated (the head's ``theta_0`` is the head as initialised:
    zero-shot, or the probe for LP-FT). For each alpha it measures task accuracy on the
    DataModule's ``split`` and, when the trainer also has a :class:`ConceptForgettingCallback`,
    the suite's mean forgetting. Rank zero logs ``wiseft/alpha=<a>/...`` and writes
    ``wiseft.csv`` and ``wiseft.png`` (task accuracy vs mean delta LP) into the log directory.
    The encoder runs under the trainer's precision plugin (``bf16-true`` included), the head in
    float32. A module with ``pretrained=None`` is refused at fit setup: a random init is no
    pre-trained reference to interpolate towards.

    Args:
        alphas: Interpolation weights in [0, 1]; 0 is the pre-trained model, 1 the fine-tuned one.
        split: Which split of the DataModule measures task accuracy: ``val`` or ``test``.
        method: Label of this run in the table and plot (default: derived from the module).

    Example:
        >>> callback = WiSEFTCallback(alphas=[0.0, 0.5, 1.0])
    """

    def __init__(
        self,
        alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        split: Literal["val", "test"] = "val",
        method: str | None = None,
    ) -> None:
        if not alphas:
            raise ValueError("alphas is empty: give at least one WiSE-FT alpha in [0, 1]")
        for alpha in alphas:
            check_alpha(alpha)
        self.alphas = [float(a) for a in alphas]
        self.split = split
        self.method = method
        self.rows: list[dict[str, float | str]] = []

    def _method(self, module: LightningModule) -> str:
        if self.method:
            return self.method
        hp = module.hparams
        parts = [hp.get("loss", "ft"), f"ldifs={hp.get('ldifs_weight', 0)}"]
        return ",".join(str(p) for p in parts)

    def _loader(self, trainer: Trainer) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        datamodule = trainer_datamodule(trainer)
        if datamodule is None:
            raise ValueError("WiSEFTCallback needs a DataModule to measure task accuracy")
        if self.split == "test":
            datamodule.setup("test")
            return datamodule.test_dataloader()
        return datamodule.val_dataloader()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_fit(pl_module)

    def check_fit(self, pl_module: LightningModule) -> None:
        """Raise the error ``setup("fit")`` would (no pre-trained weights), without a Trainer."""
        _check_pretrained(pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pretrained_encoder, pretrained_head = pretrained_parts(pl_module)
        forgetting = next(
            (c for c in trainer_callbacks(trainer) if isinstance(c, ConceptForgettingCallback)),
            None,
        )
        loader = self._loader(trainer)
        method = self._method(pl_module)
        self.rows = []
        finetuned_encoder = _part(pl_module, "image_encoder", nn.Module)
        finetuned_head = _part(pl_module, "head", nn.Linear)
        for alpha in self.alphas:
            encoder = wise_ft(pretrained_encoder, finetuned_encoder, alpha)
            # A float32 copy: classification_accuracy feeds it float32 features.
            head = wise_ft(pretrained_head, finetuned_head, alpha).float()
            accuracy = classification_accuracy(
                PrecisionEncoder(encoder, trainer.precision_plugin),
                head,
                loader,
                pl_module.device,
            )
            row: dict[str, float | str] = {"method": method, "alpha": alpha, "task_acc": accuracy}
            if forgetting is not None and forgetting.baseline:
                deltas = forgetting.measure(encoder, pl_module.device, autocast_dtype_of(trainer))
                row.update({k: v for k, v in deltas.items() if k.startswith("mean_")})
            self.rows.append(row)
        # trainer.log_dir broadcasts from rank zero: every rank must ask before any returns.
        directory = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            for row in self.rows:
                metrics = {
                    f"wiseft/alpha={row['alpha']}/{k}": float(v)
                    for k, v in row.items()
                    if k not in ("method", "alpha")
                }
                logger.log_metrics(metrics, step=trainer.global_step)
        write_wiseft_csv(self.rows, directory / "wiseft.csv")
        plot_wiseft(self.rows, directory / "wiseft.png")
        rank_zero_info(f"WiSE-FT ({self.split} accuracy, %):\n{format_wiseft_table(self.rows)}")
