import math

import pytest
import torch

from ldifs_lightning.regularizers import ldifs_distance


def _normalise_by_hand(x, normalize):
    """x: nested lists [P][C]; unit l2 norm over P per channel (token) or over C per position."""
    positions, channels = len(x), len(x[0])
    if normalize == "none":
        return x
    if normalize == "token":
        norms = [math.sqrt(sum(x[p][c] ** 2 for p in range(positions))) for c in range(channels)]
        return [[x[p][c] / max(norms[c], 1e-12) for c in range(channels)] for p in range(positions)]
    norms = [math.sqrt(sum(v**2 for v in x[p])) for p in range(positions)]
    return [[x[p][c] / max(norms[p], 1e-12) for c in range(channels)] for p in range(positions)]


def _by_hand(features, reference, normalize):
    """The LDIFS formula written out with Python loops over every element."""
    total = 0.0
    batch = features[0].shape[0]
    for n in range(batch):
        per_sample = 0.0
        for f, r in zip(features, reference, strict=True):
            a = _normalise_by_hand(f[n].tolist(), normalize)
            b = _normalise_by_hand(r[n].tolist(), normalize)
            positions, channels = len(a), len(a[0])
            squared = sum(
                (a[p][c] - b[p][c]) ** 2 for p in range(positions) for c in range(channels)
            )
            per_sample += squared / (positions * channels)
        total += per_sample / len(features)
    return total / batch


@pytest.mark.parametrize("normalize", ["token", "channel", "none"])
def test_matches_formula_written_by_hand(normalize):
    features = [torch.randn(2, 3, 4), torch.randn(2, 5, 2)]
    reference = [torch.randn(2, 3, 4), torch.randn(2, 5, 2)]
    expected = _by_hand(features, reference, normalize)
    got = ldifs_distance(features, reference, normalize=normalize).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_token_mode_on_a_worked_example():
    # One sample, 2 positions, 1 channel: token-normalised f = [0.6, 0.8], r = [1, 0].
    features = [torch.tensor([[[3.0], [4.0]]])]
    reference = [torch.tensor([[[2.0], [0.0]]])]
    expected = ((0.6 - 1.0) ** 2 + (0.8 - 0.0) ** 2) / 2
    assert ldifs_distance(features, reference).item() == pytest.approx(expected)


@pytest.mark.parametrize("normalize", ["token", "channel", "none"])
def test_zero_when_features_equal(normalize):
    features = [torch.randn(3, 4, 5), torch.randn(3, 2, 5)]
    assert ldifs_distance(features, [f.clone() for f in features], normalize).item() == 0.0


def test_zero_vectors_are_safe():
    zeros = [torch.zeros(2, 3, 4)]
    for normalize in ["token", "channel"]:
        value = ldifs_distance(zeros, [torch.zeros(2, 3, 4)], normalize)
        assert torch.isfinite(value) and value.item() == 0.0


def test_gradient_flows_only_into_trainable_side():
    features = [torch.randn(2, 3, 4, requires_grad=True)]
    reference = [torch.randn(2, 3, 4, requires_grad=True)]
    ldifs_distance(features, reference).backward()
    assert features[0].grad is not None and features[0].grad.abs().sum() > 0
    assert reference[0].grad is None


def test_channel_mode_is_about_p_over_c_smaller_than_token_mode():
    torch.manual_seed(1)
    positions, channels = 50, 768
    features = [torch.randn(4, positions, channels)]
    reference = [torch.randn(4, positions, channels)]
    token = ldifs_distance(features, reference, "token").item()
    channel = ldifs_distance(features, reference, "channel").item()
    # For independent random features both give 2 / (size of the normalised axis) per element.
    assert token == pytest.approx(2 / positions, rel=0.05)
    assert channel == pytest.approx(2 / channels, rel=0.05)


def test_mismatched_shapes_name_the_tap():
    with pytest.raises(ValueError, match=r"tap 1: features \(2, 3, 4\) and reference \(2, 3, 5\)"):
        ldifs_distance([torch.randn(2, 3, 4)] * 2, [torch.randn(2, 3, 4), torch.randn(2, 3, 5)])


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 feature taps but 1 reference taps"):
        ldifs_distance([torch.randn(1, 2, 3)] * 2, [torch.randn(1, 2, 3)])


def test_bad_normalize_lists_the_modes():
    with pytest.raises(
        ValueError, match=r"normalize='l2' is not one of \['token', 'channel', 'none'\]"
    ):
        ldifs_distance([torch.randn(1, 2, 3)], [torch.randn(1, 2, 3)], normalize="l2")


def test_bfloat16_taps_are_computed_in_float32():
    features = [torch.randn(2, 3, 4)]
    reference = [torch.randn(2, 3, 4)]
    low = ldifs_distance([f.bfloat16() for f in features], [r.bfloat16() for r in reference])
    assert low.dtype == torch.float32
    full = ldifs_distance(
        [f.bfloat16().float() for f in features], [r.bfloat16().float() for r in reference]
    )
    assert low.item() == pytest.approx(full.item(), rel=1e-6)
