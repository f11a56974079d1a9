import re

import pytest
import torch
from open_clip.transformer import VisionTransformer

from ldifs_lightning.models import FeatureTaps, create_clip, default_tap_names
from tests.conftest import TINY_RN, TINY_VIT


def test_default_vit_taps_for_twelve_blocks_are_ln_pre_and_blocks_3_6_9_12():
    encoder = VisionTransformer(
        image_size=32, patch_size=8, width=32, layers=12, heads=2, mlp_ratio=2.0, output_dim=16
    )
    assert default_tap_names(encoder) == [
        "ln_pre",
        "transformer.resblocks.2",
        "transformer.resblocks.5",
        "transformer.resblocks.8",
        "transformer.resblocks.11",
    ]


def test_default_vit_taps_depend_only_on_depth():
    encoder = VisionTransformer(
        image_size=32, patch_size=8, width=32, layers=2, heads=2, mlp_ratio=2.0, output_dim=16
    )
    assert default_tap_names(encoder) == [
        "ln_pre",
        "transformer.resblocks.0",
        "transformer.resblocks.1",
    ]


def test_vit_taps_equal_open_clip_intermediates():
    encoder = create_clip(TINY_VIT).visual.eval()
    images = torch.randn(2, 3, 32, 32)
    with FeatureTaps(encoder) as taps:
        embedding = encoder(images)
    features = taps.features()
    assert [tuple(f.shape) for f in features] == [(2, 17, 64)] * 5
    reference = encoder.forward_intermediates(images, output_fmt="NLC")
    for tap, block in zip(features[1:], reference["image_intermediates"], strict=True):
        torch.testing.assert_close(tap[:, 1:], block)  # open_clip drops the class token
    torch.testing.assert_close(embedding, reference["image_features"])


def test_resnet_taps_are_stem_and_layers_flattened_to_positions_channels():
    encoder = create_clip(TINY_RN).visual.eval()
    images = torch.randn(2, 3, 32, 32)
    assert default_tap_names(encoder) == ["avgpool", "layer1", "layer2", "layer3", "layer4"]
    with FeatureTaps(encoder) as taps:
        encoder(images)
    features = taps.features()
    reference = encoder.forward_intermediates(images)["image_intermediates"]
    for tap, block in zip(features, reference, strict=True):
        n, c, h, w = block.shape
        assert tap.shape == (n, h * w, c)
        torch.testing.assert_close(tap, block.permute(0, 2, 3, 1).reshape(n, h * w, c))


def test_hooks_removed_after_an_exception():
    encoder = create_clip(TINY_VIT).visual
    with pytest.raises(RuntimeError), FeatureTaps(encoder):
        encoder(torch.randn(2, 5, 32, 32))  # wrong number of channels
    assert all(not module._forward_hooks for module in encoder.modules())


def test_hooks_removed_after_success():
    encoder = create_clip(TINY_VIT).visual
    with FeatureTaps(encoder):
        encoder(torch.randn(1, 3, 32, 32))
    assert all(not module._forward_hooks for module in encoder.modules())


def test_unknown_tap_lists_valid_names():
    encoder = create_clip(TINY_VIT).visual
    with pytest.raises(ValueError, match=r"tap 'blocks\.3' is not a module.*valid names: .*ln_pre"):
        FeatureTaps(encoder, ["blocks.3"])


def test_other_encoders_need_explicit_taps():
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(ValueError, match=r"no default taps for Sequential; .*from: 0, 1"):
        default_tap_names(encoder)
    with FeatureTaps(encoder, ["0"]) as taps:
        encoder(torch.randn(2, 3, 5, 5))
    assert taps.features()[0].shape == (2, 9, 4)


@pytest.mark.parametrize("model_name", [TINY_VIT, TINY_RN])
def test_taps_are_views_of_the_module_outputs_not_copies(model_name):
    # LDIFS reads every tap of both encoders on every step: the [N, P, C] layout must cost no copy.
    encoder = create_clip(model_name).visual.eval()
    names = default_tap_names(encoder)
    outputs = {}
    handles = [
        encoder.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: outputs.__setitem__(name, output)
        )
        for name in names
    ]
    try:
        with FeatureTaps(encoder) as taps:
            encoder(torch.randn(2, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    for name, feature in zip(names, taps.features(), strict=True):
        assert feature.data_ptr() == outputs[name].data_ptr(), name


@pytest.mark.parametrize("name", ["class_embedding", "transformer.resblocks.9"])
def test_parameters_and_missing_blocks_are_not_taps(name):
    encoder = create_clip(TINY_VIT).visual
    with pytest.raises(ValueError, match=rf"tap '{re.escape(name)}' is not a module"):
        FeatureTaps(encoder, [name])
