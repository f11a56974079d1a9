"""The empty tap name "" records the encoder's own output (what LFL compares)."""

import torch

from ldifs_lightning.models import FeatureTaps, create_clip
from tests.conftest import TINY_VIT


def test_the_root_tap_records_the_encoder_output_as_one_position():
    encoder = create_clip(TINY_VIT).visual
    images = torch.randn(3, 3, 32, 32)
    with FeatureTaps(encoder, [""]) as taps:
        embedding = encoder(images)
    (feature,) = taps.features()
    assert feature.shape == (3, 1, 32)
    assert torch.equal(feature[:, 0], embedding)
    assert torch.equal(feature[:, 0], encoder(images))


def test_the_root_tap_of_a_plain_module_next_to_a_submodule():
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    x = torch.randn(6, 4)
    with FeatureTaps(encoder, ["0", ""]) as taps:
        encoder(x)
    hidden, output = taps.features()
    assert torch.equal(hidden[:, 0], encoder[0](x))
    assert torch.equal(output[:, 0], encoder(x))
