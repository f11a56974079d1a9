"""Lightning callbacks: concept-forgetting monitor and WiSE-FT evaluation (reports: reporting/)."""

from ldifs_lightning.callbacks.forgetting import ConceptForgettingCallback
from ldifs_lightning.callbacks.wise_ft import WiSEFTCallback

__all__ = ["ConceptForgettingCallback", "WiSEFTCallback"]
