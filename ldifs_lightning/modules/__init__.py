"""LightningModules: fine-tuning (cross-entropy + regularisers), LDIFS, FLYP, CLIP pre-training."""

from ldifs_lightning.modules.fine_tuner import CLIPFineTuner
from ldifs_lightning.modules.finetune import FineTuneModule
from ldifs_lightning.modules.flyp import FLYPModule
from ldifs_lightning.modules.ldifs_module import LDIFSModule

__all__ = ["CLIPFineTuner", "FLYPModule", "FineTuneModule", "LDIFSModule"]
