"""open_clip model building, feature taps and zero-shot heads."""

from ldifs_lightning.models.factory import (
    create_clip,
    get_tokenizer,
    image_encoder_of,
    image_size_of,
    logit_scale_of,
    register_model_config,
    resolve_pretrained,
)
from ldifs_lightning.models.taps import FeatureTaps, default_tap_names
from ldifs_lightning.models.zero_shot import (
    build_zero_shot_head,
    check_templates,
    zero_shot_class_embeddings,
)

__all__ = [
    "FeatureTaps",
    "build_zero_shot_head",
    "check_templates",
    "create_clip",
    "default_tap_names",
    "get_tokenizer",
    "image_encoder_of",
    "image_size_of",
    "logit_scale_of",
    "register_model_config",
    "resolve_pretrained",
    "zero_shot_class_embeddings",
]
