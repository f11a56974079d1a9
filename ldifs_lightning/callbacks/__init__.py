"""Lightning callbacks: concept-forgetting monitor, WiSE-FT evaluation and weight averaging
(reports: reporting/)."""

from ldifs_lightning.callbacks.forgetting import ConceptForgettingCallback
from ldifs_lightning.callbacks.weight_averaging import EncoderWeightAveraging
from ldifs_lightning.callbacks.wise_ft import WiSEFTCallback

__all__ = ["ConceptForgettingCallback", "EncoderWeightAveraging", "WiSEFTCallback"]
