"""Typed access to the Trainer attributes Lightning sets at run time."""

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

from ldifs_lightning.callbacks.trainer_attributes import trainer_callbacks, trainer_datamodule


def test_callbacks_and_datamodule_are_the_trainers(tmp_path):
    monitor = LearningRateMonitor()
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=[monitor],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    assert monitor in trainer_callbacks(trainer)
    assert trainer_callbacks(trainer) is trainer.callbacks
    assert trainer_datamodule(trainer) is None
    data = BoringDataModule()
    trainer.validate(BoringModel(), datamodule=data, verbose=False)
    assert trainer_datamodule(trainer) is data
