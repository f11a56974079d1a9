"""image_encoder_of / logit_scale_of: an open_clip model's image tower and temperature, typed."""

import pytest
import torch
from torch import nn

from ldifs_lightning.models import create_clip, image_encoder_of, logit_scale_of
from tests.conftest import TINY_VIT


def test_they_return_the_models_own_tower_and_scale():
    clip = create_clip(TINY_VIT)
    assert image_encoder_of(clip) is clip.visual
    assert logit_scale_of(clip) is clip.logit_scale


def test_a_tensor_where_a_tower_belongs_fails_with_one_line():
    fake = nn.Module()
    fake.register_buffer("visual", torch.zeros(1))
    with pytest.raises(TypeError, match=r"^Module.visual is a Tensor, not an image tower"):
        image_encoder_of(fake)


def test_a_module_where_the_scale_belongs_fails_with_one_line():
    fake = nn.Module()
    fake.logit_scale = nn.Identity()
    with pytest.raises(TypeError, match=r"^Module.logit_scale is a Identity, not a tensor"):
        logit_scale_of(fake)
