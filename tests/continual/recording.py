"""Callbacks the continual tests add to every stage through ``fit_args``."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RecordStart(Callback):
    """Save, at the start of each stage's fit, the trainable encoder and the first regulariser's
    frozen reference copy to ``<out>/<task>.pt``."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        task = trainer.datamodule.hparams.dataset
        reference = pl_module.reference_encoder
        record = {
            "encoder": {k: v.clone() for k, v in pl_module.image_encoder.state_dict().items()},
            "reference": None
            if reference is None
            else {k: v.clone() for k, v in reference.state_dict().items()},
        }
        Path(self.out).mkdir(parents=True, exist_ok=True)
        torch.save(record, Path(self.out) / f"{task}.pt")


class KillOnce(Callback):
    """Raise at the start of epoch ``epoch`` of task ``task``'s stage, once: the marker file
    ``marker`` records that it has (a killed process, as far as the run directory can tell)."""

    def __init__(self, task: str, epoch: int, marker: str) -> None:
        self.task, self.epoch, self.marker = task, epoch, Path(marker)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            trainer.datamodule.hparams.dataset == self.task
            and trainer.current_epoch == self.epoch
            and not self.marker.exists()
        ):
            self.marker.write_text("killed\n")
            raise RuntimeError("killed by the test")
