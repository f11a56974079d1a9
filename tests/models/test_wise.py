import pytest
import torch

from ldifs_lightning.models import create_clip
from ldifs_lightning.models.wise import interpolate_state_dicts, wise_ft
from tests.conftest import TINY_RN, TINY_VIT


@pytest.mark.parametrize("model_name", [TINY_VIT, TINY_RN])
def test_endpoints_exact_and_midpoint_is_the_mean(model_name):
    pretrained = create_clip(model_name).visual
    finetuned = create_clip(model_name).visual  # another random init: every weight differs
    at_zero = wise_ft(pretrained, finetuned, 0.0).state_dict()
    at_one = wise_ft(pretrained, finetuned, 1.0).state_dict()
    half = wise_ft(pretrained, finetuned, 0.5).state_dict()
    changed = 0
    for name, tuned in finetuned.state_dict().items():
        base = pretrained.state_dict()[name]
        assert torch.equal(at_one[name], tuned), name
        if tuned.is_floating_point():
            assert torch.equal(at_zero[name], base), name
            torch.testing.assert_close(half[name], (base + tuned) / 2)
            changed += int(not torch.equal(half[name], tuned))
    assert changed > 10  # interpolation really changed the weights it claims to


def test_alpha_outside_unit_interval_is_refused():
    state = {"w": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"WiSE-FT alpha=1.5 must be in \[0, 1\]"):
        interpolate_state_dicts(state, state, 1.5)
