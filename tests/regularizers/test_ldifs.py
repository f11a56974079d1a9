import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

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


# ----------------------------------------------------------------------- gradients
def _tap_gradient_by_hand(f, r, normalize, eps, weight):
    """d/df of ``weight * mean over p, c of (nrm(f) - nrm(r))^2`` for one sample's [P][C] lists.

    Each normalised vector a = f / max(|f|, eps) contributes 2 (a - b)^2-terms; its Jacobian is
    (I - a a^T) / |f| where |f| >= eps and I / eps below it, so the gradient of the vector is
    2 w / (P C) * (d - a (a . d)) / |f|, or 2 w / (P C) * d / eps, with d = a - b.
    """
    positions, channels = len(f), len(f[0])
    scale = 2 * weight / (positions * channels)
    if normalize == "none":
        return [[scale * (f[p][c] - r[p][c]) for c in range(channels)] for p in range(positions)]
    if normalize == "token":  # vectors are the columns: normalise over positions
        vectors = [[(p, c) for p in range(positions)] for c in range(channels)]
    else:  # rows: normalise over channels
        vectors = [[(p, c) for c in range(channels)] for p in range(positions)]
    grad = [[0.0] * channels for _ in range(positions)]
    for index in vectors:
        fv, rv = [f[p][c] for p, c in index], [r[p][c] for p, c in index]
        norm_f = math.sqrt(sum(v * v for v in fv))
        norm_r = max(math.sqrt(sum(v * v for v in rv)), eps)
        a = [v / max(norm_f, eps) for v in fv]
        d = [x - v / norm_r for x, v in zip(a, rv, strict=True)]
        if norm_f >= eps:
            along = sum(x * y for x, y in zip(a, d, strict=True))
            g = [scale * (y - x * along) / norm_f for x, y in zip(a, d, strict=True)]
        else:
            g = [scale * y / eps for y in d]
        for (p, c), value in zip(index, g, strict=True):
            grad[p][c] = value
    return grad


@pytest.mark.parametrize("normalize", ["token", "channel", "none"])
def test_gradients_match_the_formula_written_by_hand(normalize):
    torch.manual_seed(3)
    features = [torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 5, 2, requires_grad=True)]
    reference = [torch.randn(2, 3, 4), torch.randn(2, 5, 2)]
    ldifs_distance(features, reference, normalize).backward()
    batch, taps = 2, len(features)
    for f, r in zip(features, reference, strict=True):
        for n in range(batch):
            expected = _tap_gradient_by_hand(
                f[n].tolist(), r[n].tolist(), normalize, 1e-12, 1 / (batch * taps)
            )
            torch.testing.assert_close(f.grad[n], torch.tensor(expected), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("normalize", ["token", "channel"])
def test_vectors_below_eps_follow_the_clamped_branch(normalize):
    # eps = 1: vectors of norm < 1 are divided by eps (no projection), the others by their norm.
    features = torch.tensor([[[0.3, 2.0], [0.2, -1.5], [-0.1, 0.5]]], requires_grad=True)
    reference = torch.tensor([[[1.0, 0.2], [0.1, 0.3], [0.4, -2.0]]])
    value = ldifs_distance([features], [reference], normalize, eps=1.0)
    value.backward()
    expected_value = _by_hand_eps(features.detach(), reference, normalize, eps=1.0)
    assert value.item() == pytest.approx(expected_value, rel=1e-6)
    expected = _tap_gradient_by_hand(features[0].tolist(), reference[0].tolist(), normalize, 1.0, 1)
    torch.testing.assert_close(features.grad[0], torch.tensor(expected), rtol=1e-5, atol=1e-7)


def _by_hand_eps(f, r, normalize, eps):
    """One sample, one tap: mean of (nrm(f) - nrm(r))^2 with division by max(norm, eps)."""
    a, b = f[0].tolist(), r[0].tolist()
    positions, channels = len(a), len(a[0])

    def nrm(x):
        if normalize == "token":
            norms = [
                max(math.sqrt(sum(x[p][c] ** 2 for p in range(positions))), eps)
                for c in range(channels)
            ]
            return [[x[p][c] / norms[c] for c in range(channels)] for p in range(positions)]
        norms = [max(math.sqrt(sum(v * v for v in row)), eps) for row in x]
        return [[x[p][c] / norms[p] for c in range(channels)] for p in range(positions)]

    na, nb = nrm(a), nrm(b)
    squared = sum((na[p][c] - nb[p][c]) ** 2 for p in range(positions) for c in range(channels))
    return squared / (positions * channels)


@pytest.mark.parametrize("normalize", ["token", "channel", "none"])
def test_gradcheck_in_float64(normalize):
    torch.manual_seed(4)
    features = (
        torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True),
    )
    reference = [
        torch.randn(2, 3, 4, dtype=torch.float64),
        torch.randn(2, 2, 5, dtype=torch.float64),
    ]
    # Non-contiguous taps too: CNN maps [N, C, H, W] arrive as [N, H*W, C] views.
    maps = torch.randn(2, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    map_reference = torch.randn(2, 6, 4, dtype=torch.float64)

    assert torch.autograd.gradcheck(
        lambda a, b: ldifs_distance([a, b], reference, normalize), features
    )
    assert torch.autograd.gradcheck(
        lambda m: ldifs_distance([m.flatten(2).transpose(1, 2)], [map_reference], normalize),
        (maps,),
    )


def _plain_autograd(features, reference, normalize):
    """The distance as autograd through F.normalize: an independent implementation."""
    per_tap = []
    for f, r in zip(features, reference, strict=True):
        f, r = f.float(), r.float()
        if normalize != "none":
            dim = 1 if normalize == "token" else 2
            f, r = F.normalize(f, dim=dim), F.normalize(r, dim=dim)
        per_tap.append((f - r).pow(2).mean(dim=(1, 2)))
    return torch.stack(per_tap).mean(dim=0).mean()


@pytest.mark.parametrize("normalize", ["token", "channel", "none"])
@pytest.mark.parametrize("layout", ["tokens", "map"])
def test_equals_autograd_through_f_normalize(normalize, layout):
    torch.manual_seed(5)
    if layout == "tokens":
        raw = [torch.randn(4, 17, 64), torch.randn(4, 17, 64)]
        view = lambda x: x  # noqa: E731
    else:
        raw = [torch.randn(4, 32, 7, 7), torch.randn(4, 16, 14, 14)]
        view = lambda x: x.flatten(2).transpose(1, 2)  # noqa: E731
    reference = [view(x + 0.1 * torch.randn_like(x)) for x in raw]
    ours = [x.clone().requires_grad_(True) for x in raw]
    theirs = [x.clone().requires_grad_(True) for x in raw]
    value = ldifs_distance([view(x) for x in ours], reference, normalize)
    expected = _plain_autograd([view(x) for x in theirs], reference, normalize)
    value.backward()
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-9)


def test_bfloat16_gradients_come_back_in_bfloat16():
    features = [torch.randn(2, 3, 4).bfloat16().requires_grad_(True)]
    reference = [torch.randn(2, 3, 4).bfloat16()]
    ldifs_distance(features, reference).backward()
    assert features[0].grad.dtype == torch.bfloat16
    full = [features[0].detach().float().requires_grad_(True)]
    ldifs_distance(full, [reference[0].float()]).backward()
    torch.testing.assert_close(features[0].grad.float(), full[0].grad, rtol=1e-2, atol=1e-3)


def _saved_by_the_distance(features, reference, **options):
    """Every tensor the distance saves for the backward, as (data_ptr, numel)."""
    saved = []

    def pack(tensor):
        saved.append((tensor.data_ptr(), tensor.numel()))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = ldifs_distance(features, reference, "token", **options)
    return value, saved


def test_the_backward_keeps_one_gradient_per_tap_and_nothing_else():
    # Autograd through F.normalize would save the normalised difference and the inputs; the
    # written-out gradient is computed in the forward, and only it is kept, one per tap.
    features = [torch.randn(4, 17, 64, requires_grad=True), torch.randn(4, 16, 64)]
    features[1].requires_grad_(True)
    reference = [torch.randn(4, 17, 64), torch.randn(4, 16, 64)]
    inputs = {t.data_ptr() for t in features + reference}
    _, saved = _saved_by_the_distance(features, reference)
    assert sorted(numel for _, numel in saved) == [4 * 16 * 64, 4 * 17 * 64]
    assert not {pointer for pointer, _ in saved} & inputs  # the caller's tensors stay intact


def test_freeing_the_reference_reuses_its_memory_for_the_gradient():
    torch.manual_seed(4)
    features = [torch.randn(3, 5, 8, requires_grad=True), torch.randn(3, 4, 8)]
    features[1].requires_grad_(True)
    reference = [torch.randn(3, 5, 8), torch.randn(3, 4, 8)]
    kept = [r.clone() for r in reference]
    pointers = [r.data_ptr() for r in reference]
    given = list(reference)
    value, saved = _saved_by_the_distance(features, given, free_reference=True)
    assert given == [None, None]  # the list's entries are dropped
    assert [pointer for pointer, _ in saved] == pointers  # the gradients live in their memory
    value.backward()
    # Same value and gradients as with the reference kept.
    twins = [f.detach().clone().requires_grad_(True) for f in features]
    expected = ldifs_distance(twins, kept, "token")
    expected.backward()
    assert value.item() == expected.item()
    for ours, theirs in zip(features, twins, strict=True):
        assert torch.equal(ours.grad, theirs.grad)


def test_reference_taps_sharing_memory_are_not_overwritten():
    # Two tap names for one module's output give the same reference tensor twice.
    torch.manual_seed(5)
    shared = torch.randn(2, 3, 4)
    features = [torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)]
    expected = ldifs_distance(features, [shared.clone(), shared.clone()])
    got = ldifs_distance(features, [shared, shared], free_reference=True)
    assert got.item() == expected.item()


def test_views_are_never_overwritten():
    # An expanded tensor, and a slice of a larger buffer someone else may still read.
    torch.manual_seed(6)
    buffer = torch.randn(2, 4, 4)
    expanded = torch.randn(1, 3, 4).expand(2, 3, 4)
    reference = [buffer[:, 1:], expanded]
    kept = [r.clone() for r in reference]
    features = [torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)]
    before = buffer.clone()
    got = ldifs_distance(features, list(reference), free_reference=True)
    assert torch.equal(buffer, before)
    assert got.item() == ldifs_distance(features, kept).item()


def test_a_tap_without_positions_is_one_line():
    with pytest.raises(ValueError, match=r"tap 0 has no positions or channels: \(2, 0, 4\)"):
        ldifs_distance([torch.randn(2, 0, 4)], [torch.randn(2, 0, 4)])


def test_a_retained_graph_gives_the_same_gradient_twice():
    # The backward scales the saved gradient in place, except when the graph is kept.
    features = [torch.randn(2, 3, 4, requires_grad=True)]
    value = ldifs_distance(features, [torch.randn(2, 3, 4)])
    (first,) = torch.autograd.grad(value, features, retain_graph=True)
    (second,) = torch.autograd.grad(value, features)
    assert torch.equal(first, second)


def test_inference_mode_reference_taps_are_accepted():
    features = [torch.randn(2, 3, 4, requires_grad=True)]
    with torch.inference_mode():
        reference = [torch.randn(2, 3, 4)]
    value = ldifs_distance(features, reference)
    value.backward()
    expected = _plain_autograd([features[0].detach()], [reference[0].clone()], "token")
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_second_derivatives_raise_instead_of_being_wrong():
    features = [torch.randn(2, 3, 4, requires_grad=True)]
    value = ldifs_distance(features, [torch.randn(2, 3, 4)])
    weight = torch.ones((), requires_grad=True)  # a grad_output in the graph: double backward
    (grad,) = torch.autograd.grad(value, features, grad_outputs=weight, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


def test_an_encoder_that_drops_patch_tokens_is_refused_in_one_line(tmp_path):
    import json

    from ldifs_lightning import LDIFSModule
    from ldifs_lightning.models import register_model_config
    from ldifs_lightning.regularizers import LDIFS

    config = json.loads(
        (
            Path(__file__).parents[2] / "ldifs_lightning/models/model_configs/ldifs-tiny-vit.json"
        ).read_text()
    )
    config["vision_cfg"]["patch_dropout"] = 0.5
    path = tmp_path / "tiny-vit-patch-dropout.json"
    path.write_text(json.dumps(config))
    register_model_config(path)
    message = (
        r"the image encoder drops patch tokens in training \(patch_dropout: "
        r"PatchDropout\(prob=0.5\)\); set the patch dropout to 0 in the model config"
    )
    with pytest.raises(ValueError, match=message):
        LDIFSModule(["a", "b"], model_name="tiny-vit-patch-dropout", pretrained=None)
    # FT of the same model is fine, and so is LFL (its root tap is the pooled embedding).
    LDIFSModule(["a", "b"], model_name="tiny-vit-patch-dropout", pretrained=None, ldifs_weight=0)
    lfl = LDIFS(taps=[""], normalize="none")
    LDIFSModule(
        ["a", "b"],
        model_name="tiny-vit-patch-dropout",
        pretrained=None,
        ldifs_weight=0,
        regularizers=[lfl],
    )
