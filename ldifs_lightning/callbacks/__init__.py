"""Lightning callbacks: concept-forgetting monitor, WiSE-FT evaluation and their reports."""

from ldifs_lightning.callbacks.forgetting import ConceptForgettingCallback
from ldifs_lightning.callbacks.wise_ft import WiSEFTCallback

__all__ = ["ConceptForgettingCallback", "WiSEFTCallback"]
