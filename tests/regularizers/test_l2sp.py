import pytest
import torch

from ldifs_lightning.regularizers import l2sp_penalty


def test_two_parameter_toy_by_hand():
    theta = [torch.tensor(1.5, requires_grad=True), torch.tensor(-2.0, requires_grad=True)]
    theta0 = [torch.tensor(1.0), torch.tensor(0.5)]
    value = l2sp_penalty(theta, theta0)
    assert value.item() == pytest.approx(0.5**2 + 2.5**2)
    value.backward()
    assert theta[0].grad.item() == pytest.approx(2 * 0.5)
    assert theta[1].grad.item() == pytest.approx(2 * -2.5)


def test_shape_mismatch_and_empty():
    with pytest.raises(ValueError, match=r"parameter 0: shape \(2,\) differs"):
        l2sp_penalty([torch.zeros(2)], [torch.zeros(3)])
    with pytest.raises(ValueError, match="got no parameters"):
        l2sp_penalty([], [])
