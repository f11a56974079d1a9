"""WiSEFTCallback: evaluate weight-space interpolations with the pre-trained model at fit end."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ldifs_lightning.callbacks.forgetting import ConceptForgettingCallback, autocast_dtype_of
from ldifs_lightning.callbacks.wise_report import format_wiseft_table, plot_wiseft, write_wiseft_csv
from ldifs_lightning.evaluation.classification import classification_accuracy
from ldifs_lightning.models import create_clip
from ldifs_lightning.models.wise import check_alpha, wise_ft


def _pretrained_parts(module: LightningModule) -> tuple[nn.Module, nn.Module]:
    """The pre-trained encoder and the head as initialised (zero-shot or probe)."""
    encoder = getattr(module, "reference_encoder", None)
    if encoder is not None and hasattr(module, "pretrained_encoder"):
        encoder = module.pretrained_encoder()  # exact float32 even after a bf16-mixed fit
    if encoder is None:
        hparams = module.hparams
        encoder = create_clip(hparams["model_name"], hparams["pretrained"]).visual
    head = copy.deepcopy(module.head)
    head.weight.data.copy_(module.initial_head_weight)
    head.bias.data.copy_(module.initial_head_bias)
    return encoder.to(module.device), head


class _InTrainerPrecision(nn.Module):
    """``encoder`` run as a training step runs it, under the trainer's precision plugin.

    Inputs are converted to the plugin's dtype (``bf16-true`` weights need bf16 images) and the
    forward runs in its context (autocast for ``*-mixed``).
    """

    def __init__(self, encoder: nn.Module, precision: Precision) -> None:
        super().__init__()
        self.encoder = encoder
        self.precision = precision

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = self.precision.convert_input(images)
        with self.precision.forward_context():
            return self.encoder(images)


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

    def _loader(self, trainer: Trainer):
        datamodule = trainer.datamodule
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
        pretrained_encoder, pretrained_head = _pretrained_parts(pl_module)
        forgetting = next(
            (c for c in trainer.callbacks if isinstance(c, ConceptForgettingCallback)), None
        )
        loader = self._loader(trainer)
        method = self._method(pl_module)
        self.rows = []
        for alpha in self.alphas:
            encoder = wise_ft(pretrained_encoder, pl_module.image_encoder, alpha)
            # A float32 copy: classification_accuracy feeds it float32 features.
            head = wise_ft(pretrained_head, pl_module.head, alpha).float()
            accuracy = classification_accuracy(
                _InTrainerPrecision(encoder, trainer.precision_plugin),
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
