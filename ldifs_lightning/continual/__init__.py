"""Continual fine-tuning: task sequences, each stage's reference, the accuracy matrix, metrics.

:func:`run_continual` (the ``ldifs continual`` command) runs a sequence; :mod:`.metrics` computes
Last, Avg, forgetting, backward transfer and Transfer from the accuracy matrix; :mod:`.report`
writes its tables and plots.
"""

from ldifs_lightning.continual.runner import continual, run_continual

__all__ = ["continual", "run_continual"]
