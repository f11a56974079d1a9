"""LightningModules: the fine-tuner family."""

from ldifs_lightning.modules.ldifs_module import LDIFSModule

__all__ = ["LDIFSModule"]
