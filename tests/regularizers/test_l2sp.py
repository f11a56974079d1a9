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


def test_value_and_gradient_match_the_formula_and_nothing_parameter_sized_is_saved():
    torch.manual_seed(0)
    theta = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    theta0 = [torch.randn(4, 3), torch.randn(5)]
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = l2sp_penalty(theta, theta0)
    value.backward()
    expected = sum(float(((a.detach() - b) ** 2).sum()) for a, b in zip(theta, theta0, strict=True))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    for a, b in zip(theta, theta0, strict=True):
        torch.testing.assert_close(a.grad, 2 * (a.detach() - b))
    # Only the inputs themselves are kept for the backward, never their difference.
    inputs = {t.data_ptr() for t in [*theta, *theta0]}
    assert saved and all(t.data_ptr() in inputs for t in saved)


def test_float64_parameters_get_float64_gradients_of_the_formula():
    theta = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    theta0 = torch.randn(3, 2, dtype=torch.float64)
    # The penalty computes in float32 (as parameters are); compare against the float64 formula.
    value = l2sp_penalty([theta], [theta0])
    value.backward()
    assert theta.grad.dtype == torch.float64
    torch.testing.assert_close(theta.grad, 2 * (theta.detach() - theta0), rtol=1e-6, atol=1e-6)
