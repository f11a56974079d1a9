"""Regularisers towards a reference model: pure torch, no Lightning."""

from ldifs_lightning.regularizers.l2sp import l2sp_penalty
from ldifs_lightning.regularizers.ldifs import NORMALIZE_MODES, Normalize, ldifs_distance

__all__ = ["NORMALIZE_MODES", "Normalize", "l2sp_penalty", "ldifs_distance"]
