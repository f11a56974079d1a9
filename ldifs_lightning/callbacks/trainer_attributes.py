"""Typed access to ``Trainer`` attributes that Lightning sets at run time (absent from its types).

Lightning's connectors assign ``trainer.callbacks`` and ``trainer.datamodule`` from outside the
``Trainer`` class, so a type checker does not know them; these accessors give them their types.
"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningDataModule, Trainer


def trainer_callbacks(trainer: Trainer) -> list[Callback]:
    """The trainer's callbacks (``trainer.callbacks``).

    Example:
        >>> from lightning.pytorch.callbacks import LearningRateMonitor
        >>> monitor = LearningRateMonitor()
        >>> monitor in trainer_callbacks(Trainer(callbacks=[monitor], logger=False))
        True
    """
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]  # set at run time
    return callbacks


def trainer_datamodule(trainer: Trainer) -> LightningDataModule | None:
    """The DataModule the trainer runs with (``trainer.datamodule``), or None.

    Example:
        >>> trainer_datamodule(Trainer(logger=False)) is None
        True
    """
    datamodule: LightningDataModule | None = trainer.datamodule  # type: ignore[attr-defined]
    return datamodule
