"""Regularisers towards a reference model: plain torch ``nn.Module`` s, no Lightning.

Each is chosen in YAML by ``class_path`` under ``model.init_args.regularizers`` and owns what it
needs (LDIFS: a frozen pre-trained copy and its taps; L2SP: the pre-trained parameters; LwF: the
previous stage's encoder and the earlier heads; ZSCL: reference images and texts). LFL is
``LDIFS(taps=[""], normalize="none")`` (the l2 distance of the final embeddings). See
:mod:`ldifs_lightning.regularizers.base` for the interface and ``docs/architecture.md`` for how to
add one.
"""

from ldifs_lightning.regularizers.base import (
    Regularizer,
    TaskContext,
    TrainingStep,
    build_regularizer,
    regularizer_spec,
)
from ldifs_lightning.regularizers.frozen_copy import EncoderSource, FrozenCopy
from ldifs_lightning.regularizers.l2sp import L2SP, l2sp_penalty
from ldifs_lightning.regularizers.ldifs import LDIFS, NORMALIZE_MODES, Normalize, ldifs_distance
from ldifs_lightning.regularizers.lwf import LwF, distillation_kl
from ldifs_lightning.regularizers.zscl import ZSCL, zscl_distillation

__all__ = [
    "L2SP",
    "LDIFS",
    "NORMALIZE_MODES",
    "ZSCL",
    "EncoderSource",
    "FrozenCopy",
    "LwF",
    "Normalize",
    "Regularizer",
    "TaskContext",
    "TrainingStep",
    "build_regularizer",
    "distillation_kl",
    "l2sp_penalty",
    "ldifs_distance",
    "regularizer_spec",
    "zscl_distillation",
]
