"""Concept-forgetting measurements as plain functions: (encoder, data, device) -> numbers.

Nothing here imports Lightning; callbacks and scripts wrap these functions.
"""

from ldifs_lightning.evaluation.feature_cache import FeatureCache, cache_key, fingerprint_module
from ldifs_lightning.evaluation.features import extract_features
from ldifs_lightning.evaluation.linear_probe import (
    DEFAULT_L2_GRID,
    LinearProbe,
    fit_linear_probe,
    linear_probe_accuracy,
    select_l2,
)
from ldifs_lightning.evaluation.zero_shot import zero_shot_accuracy

__all__ = [
    "DEFAULT_L2_GRID",
    "FeatureCache",
    "LinearProbe",
    "cache_key",
    "extract_features",
    "fingerprint_module",
    "fit_linear_probe",
    "linear_probe_accuracy",
    "select_l2",
    "zero_shot_accuracy",
]
