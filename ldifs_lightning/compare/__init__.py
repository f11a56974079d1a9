"""``ldifs compare``: every fine-tuning method on the embedded domains, side by side.

:mod:`.grid` (methods, knobs, checks), :mod:`.runner` (the runs), :mod:`.summary` (means over
seeds, frontiers, selected and matched settings: plain functions), :mod:`.report` (table, plots).
"""

from ldifs_lightning.compare.runner import compare, run_compare

__all__ = ["compare", "run_compare"]
