"""ldifs-lightning: fine-tune CLIP image encoders without destroying what they already know."""

from importlib.metadata import PackageNotFoundError, version

from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.evaluation.forgetting import measure_forgetting
from ldifs_lightning.modules import FineTuneModule, FLYPModule, LDIFSModule

try:
    __version__ = version("ldifs-lightning")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConceptForgettingCallback",
    "FLYPModule",
    "FineTuneModule",
    "LDIFSModule",
    "__version__",
    "measure_forgetting",
]
