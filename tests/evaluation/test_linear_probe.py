import statistics
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from ldifs_lightning.evaluation import (
    DEFAULT_L2_GRID,
    LinearProbe,
    fit_linear_probe,
    linear_probe_accuracy,
)
from ldifs_lightning.evaluation.linear_probe import _validation_split


def _gaussian_classes(
    n: int, dim: int, num_classes: int, separation: float, seed: int, offset: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm rows of ``separation * mu_y + N(0, I)``, optionally plus a shared offset."""
    generator = torch.Generator().manual_seed(seed)
    means = F.normalize(torch.randn(num_classes, dim, generator=generator), dim=1) * separation
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=generator)]
    features = means[labels] + torch.randn(n, dim, generator=generator)
    features = F.normalize(features, dim=1)
    if offset:  # a large common component, as CLIP features have
        features = F.normalize(features + offset * F.normalize(torch.ones(dim), dim=0), dim=1)
    return features, labels


def test_separable_classes_are_learned_perfectly() -> None:
    features, labels = _gaussian_classes(600, 16, 4, separation=12.0, seed=0)
    accuracy, probe = linear_probe_accuracy(
        features[:400], labels[:400], features[400:], labels[400:]
    )
    assert accuracy >= 0.99
    assert probe.weight.shape == (4, 16) and probe.bias.shape == (4,)
    assert probe.l2 in DEFAULT_L2_GRID
    assert list(probe.val_accuracy) == sorted(DEFAULT_L2_GRID, reverse=True)


def test_random_labels_give_chance_accuracy() -> None:
    generator = torch.Generator().manual_seed(1)
    features = F.normalize(torch.randn(2600, 32, generator=generator), dim=1)
    labels = torch.randint(0, 4, (2600,), generator=generator)
    accuracy, probe = linear_probe_accuracy(
        features[:600], labels[:600], features[600:], labels[600:]
    )
    # chance is 0.25; the standard error with 2000 test rows is about 0.01
    assert 0.19 < accuracy < 0.31
    assert max(probe.val_accuracy.values()) < 0.40


def test_chosen_l2_moves_with_the_data() -> None:
    def few_noisy(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        # 200 fitted rows in 200 dimensions, weak signal: fitting the noise hurts.
        return _gaussian_classes(250, 200, 2, separation=1.5, seed=seed)

    def many_clean(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Classes differ by a tiny but noise-free margin on one axis, hidden among ten
        # high-variance axes: only a large weight on that axis (weak l2) separates them.
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(2000) % 2
        margin = (2 * labels - 1) * 0.02 + 0.002 * torch.randn(2000, generator=generator)
        nuisance = torch.randn(2000, 10, generator=generator)
        return F.normalize(torch.cat([margin[:, None], nuisance], dim=1), dim=1), labels

    seeds = range(7)
    noisy = [fit_linear_probe(*few_noisy(s), seed=s).l2 for s in seeds]
    clean = [fit_linear_probe(*many_clean(s), seed=s).l2 for s in seeds]
    assert statistics.median(noisy) >= 1e-3
    assert max(clean) <= 1e-4
    assert statistics.median(noisy) > 10 * statistics.median(clean)


def test_solution_matches_sklearn_with_c_from_l2() -> None:
    features, labels = _gaussian_classes(600, 20, 5, separation=2.0, seed=2, offset=3.0)
    l2 = 1e-3
    probe = fit_linear_probe(
        features, labels, l2_grid=[l2], dtype=torch.float64, tol=1e-9, max_iter=5000
    )
    reference = LogisticRegression(C=1.0 / (2.0 * l2 * 600), tol=1e-10, max_iter=10_000)
    reference.fit(features.double().numpy(), labels.numpy())
    weight = probe.weight.numpy()
    np.testing.assert_allclose(weight, reference.coef_, atol=1e-4 * np.abs(weight).max())
    # The bias is defined up to a shared constant (the penalty does not touch it).
    bias = probe.bias.numpy() - probe.bias.numpy().mean()
    np.testing.assert_allclose(bias, reference.intercept_ - reference.intercept_.mean(), atol=1e-4)


def test_accuracy_agrees_with_sklearn_over_the_same_grid() -> None:
    features, labels = _gaussian_classes(1500, 32, 5, separation=2.5, seed=3, offset=2.0)
    train_x, train_y, test_x, test_y = (
        features[:1000],
        labels[:1000],
        features[1000:],
        labels[1000:],
    )
    ours, _ = linear_probe_accuracy(train_x, train_y, test_x, test_y)

    fit_index, val_index = (index.numpy() for index in _validation_split(1000, 0.2, 0))
    x, y = train_x.double().numpy(), train_y.numpy()
    best_l2, best = None, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for l2 in sorted(DEFAULT_L2_GRID, reverse=True):
            model = LogisticRegression(C=1.0 / (2.0 * l2 * len(fit_index)), max_iter=1000)
            accuracy = model.fit(x[fit_index], y[fit_index]).predict(x[val_index]) == y[val_index]
            if accuracy.mean() > best:
                best_l2, best = l2, accuracy.mean()
        model = LogisticRegression(C=1.0 / (2.0 * best_l2 * 1000), max_iter=1000).fit(x, y)
    theirs = (model.predict(test_x.double().numpy()) == test_y.numpy()).mean()
    assert abs(ours - theirs) <= 0.01
    assert 0.5 < ours < 0.99  # a problem where the probe matters


def test_deterministic_and_split_depends_only_on_seed_and_n() -> None:
    features, labels = _gaussian_classes(400, 24, 3, separation=2.0, seed=4)
    first = fit_linear_probe(features, labels, seed=7)
    second = fit_linear_probe(features.clone(), labels.clone(), seed=7)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert first.val_accuracy == second.val_accuracy and first.l2 == second.l2

    fit_a, val_a = _validation_split(400, 0.2, seed=7)
    fit_b, val_b = _validation_split(400, 0.2, seed=7)
    assert torch.equal(val_a, val_b) and torch.equal(fit_a, fit_b)
    assert len(val_a) == 80 and sorted(torch.cat([fit_a, val_a]).tolist()) == list(range(400))
    assert not torch.equal(_validation_split(400, 0.2, seed=8)[1], val_a)


def test_probe_logits_and_predict() -> None:
    probe = LinearProbe(torch.tensor([[1.0, -1.0], [0.0, 2.0]]), torch.tensor([0.5, 0.0]), l2=0.1)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    expected = torch.tensor([[1.5, 0.0], [-0.5, 2.0], [1.5, 2.0]])
    torch.testing.assert_close(probe.logits(features), expected)
    assert probe.predict(features).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"shape \[N, 2\], got \(3, 3\)"):
        probe.logits(torch.ones(3, 3))


def test_num_classes_can_exceed_the_labels_seen() -> None:
    features, labels = _gaussian_classes(300, 8, 3, separation=6.0, seed=5)
    probe = fit_linear_probe(features, labels, num_classes=5)
    assert probe.weight.shape == (5, 8)
    assert set(probe.predict(features).tolist()) <= {0, 1, 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_features_device() -> None:
    features, labels = _gaussian_classes(500, 16, 4, separation=3.0, seed=6)
    cpu = fit_linear_probe(features, labels)
    gpu = fit_linear_probe(features.cuda(), labels.cuda())
    assert gpu.weight.is_cuda and gpu.l2 == cpu.l2
    assert (gpu.predict(features.cuda()).cpu() == cpu.predict(features)).float().mean() > 0.98


def _good() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(20, 4), torch.arange(20) % 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: (x, y[:10]), r"train_labels must have shape \[20\]"),
        (lambda x, y: (x, y + 5), r"train_labels contains 7; allowed labels are 0\.\.2"),
        (lambda x, y: (x, y - 1), "train_labels contains -1"),
        (lambda x, y: (x, y.float()), "integer tensor"),
        (lambda x, y: (x[0], y), "2-D"),
        (lambda x, y: (x[:0], y[:0]), "empty"),
        (lambda x, y: (x.long(), y), "floating point"),
    ],
)
def test_bad_training_data(change, message: str) -> None:
    features, labels = change(*_good())
    with pytest.raises(ValueError, match=message):
        fit_linear_probe(features, labels, num_classes=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"l2_grid": []}, "l2_grid is empty"),
        ({"l2_grid": [1e-3, -1.0]}, "l2_grid contains -1.0; allowed values are finite and >= 0"),
        ({"l2_grid": [float("nan")]}, "l2_grid contains nan"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\), got 0.0"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\), got 1.0"),
        ({"num_classes": 1}, "num_classes must be >= 2, got 1"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"dtype": torch.float16}, "dtype must be torch.float32 or torch.float64"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_linear_probe(*_good(), **kwargs)


def test_fewer_than_two_classes_present() -> None:
    with pytest.raises(ValueError, match="at least 2 distinct classes, got 1"):
        fit_linear_probe(torch.randn(10, 4), torch.full((10,), 2), num_classes=3)


def test_bad_test_data() -> None:
    features, labels = _good()
    with pytest.raises(ValueError, match="test_features has 5 columns; train_features has 4"):
        linear_probe_accuracy(features, labels, torch.randn(5, 5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"test_labels contains 3; allowed labels are 0\.\.2"):
        linear_probe_accuracy(features, labels, torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"test_labels must have shape \[2\]"):
        linear_probe_accuracy(features, labels, torch.randn(2, 4), torch.tensor([0]))
