import statistics
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from ldifs_lightning.evaluation import (
    DEFAULT_L2_GRID,
    LinearProbe,
    fit_linear_probe,
    linear_probe_accuracy,
)
from ldifs_lightning.evaluation.linear_probe import _validation_split, select_l2


def _sklearn_c(l2: float, n: int, num_classes: int) -> float:
    """scikit-learn's C for our ``mean CE + l2 * ||W||^2`` on ``n`` rows.

    Multinomial: ``C * sum CE + ||W||^2 / 2``, so C = 1 / (2 l2 n). Two classes: one vector
    w = W[1] - W[0] with W[0] = -W[1] at our optimum, so ||W||^2 = ||w||^2 / 2 and C = 1 / (l2 n).
    """
    return 1.0 / (l2 * n) if num_classes == 2 else 1.0 / (2.0 * l2 * n)


def _sklearn_test_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    l2: float,
) -> float:
    num_classes = int(train_y.max()) + 1
    model = LogisticRegression(
        C=_sklearn_c(l2, len(train_y), num_classes), tol=1e-8, max_iter=10_000
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x.double().numpy(), train_y.numpy())
    return float((model.predict(test_x.double().numpy()) == test_y.numpy()).mean())


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
    assert statistics.median(noisy) >= 7e-4  # the strong half of the grid
    assert max(clean) <= 1e-4
    assert statistics.median(noisy) > 10 * statistics.median(clean)


@pytest.mark.parametrize("num_classes", [2, 5])
def test_solution_matches_sklearn_with_c_from_l2(num_classes: int) -> None:
    features, labels = _gaussian_classes(600, 20, num_classes, separation=2.0, seed=2, offset=3.0)
    l2 = 1e-3
    probe = fit_linear_probe(
        features, labels, l2_grid=[l2], dtype=torch.float64, tol=1e-9, max_iter=5000
    )
    reference = LogisticRegression(C=_sklearn_c(l2, 600, num_classes), tol=1e-10, max_iter=10_000)
    reference.fit(features.double().numpy(), labels.numpy())
    weight, bias = probe.weight.numpy(), probe.bias.numpy()
    intercept = reference.intercept_
    if num_classes == 2:  # scikit-learn fits one vector: the difference of our two rows
        weight, bias = weight[1:] - weight[:1], bias[1:] - bias[:1]
    else:  # the biases are defined up to a shared constant (the penalty does not touch them)
        bias, intercept = bias - bias.mean(), intercept - intercept.mean()
    np.testing.assert_allclose(weight, reference.coef_, atol=1e-4 * np.abs(weight).max())
    np.testing.assert_allclose(bias, intercept, atol=1e-4)


def test_accuracy_agrees_with_sklearn_over_the_same_grid() -> None:
    features, labels = _gaussian_classes(1500, 32, 5, separation=2.5, seed=3, offset=2.0)
    train_x, train_y, test_x, test_y = (
        features[:1000],
        labels[:1000],
        features[1000:],
        labels[1000:],
    )
    ours, _ = linear_probe_accuracy(train_x, train_y, test_x, test_y)

    # The same protocol with scikit-learn: same split, grid, selection rule and refit.
    fit_index, val_index = (index.numpy() for index in _validation_split(1000, 0.2, 0))
    x, y = train_x.double().numpy(), train_y.numpy()
    held_out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for l2 in DEFAULT_L2_GRID:
            model = LogisticRegression(C=_sklearn_c(l2, len(fit_index), 5), max_iter=1000)
            accuracy = model.fit(x[fit_index], y[fit_index]).predict(x[val_index]) == y[val_index]
            held_out.append(accuracy.mean())
    best_l2 = select_l2(DEFAULT_L2_GRID, held_out, tolerance=1.0 / len(val_index))
    theirs = _sklearn_test_accuracy(train_x, train_y, test_x, test_y, best_l2)
    assert abs(ours - theirs) <= 0.01
    assert 0.5 < ours < 0.99  # a problem where the probe matters


def _anisotropic_classes(
    n: int, dim: int, num_classes: int, separation: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means plus noise whose scale spans 0.03..3 across axes, then a common offset.

    Unlike isotropic noise, the class-mean direction (what a strong l2 converges to) is far from
    the best separator here, so the weak end of the grid matters, as with CLIP-like features.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-1.5, 0.5, dim)[torch.randperm(dim, generator=generator)]
    means = F.normalize(torch.randn(num_classes, dim, generator=generator), dim=1) * separation
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    features = means[labels] + torch.randn(n, dim, generator=generator) * scale
    return F.normalize(features + 3.0 * F.normalize(torch.ones(dim), dim=0), dim=1), labels


@pytest.mark.parametrize(
    "problem",
    [
        lambda: _gaussian_classes(2000, 32, 5, separation=2.5, seed=3, offset=2.0),
        lambda: _anisotropic_classes(2000, 32, 3, separation=0.3, seed=11),
    ],
    ids=["isotropic-5-classes", "anisotropic-3-classes"],
)
def test_accuracy_agrees_with_sklearn_choosing_its_own_c(problem) -> None:
    features, labels = problem()
    train_x, train_y, test_x, test_y = (
        features[:1000],
        labels[:1000],
        features[1000:],
        labels[1000:],
    )
    ours, _ = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and API-deprecation notices
        # Its own protocol: C from logspace(-4, 4, 10), chosen by 5-fold cross-validation.
        model = LogisticRegressionCV(Cs=10, cv=5, max_iter=1000)
        model.fit(train_x.double().numpy(), train_y.numpy())
    theirs = float((model.predict(test_x.double().numpy()) == test_y.numpy()).mean())
    assert abs(ours - theirs) <= 0.01
    assert 0.5 < theirs < 0.99  # a problem where the choice of C matters


def _plateau_rows(
    n: int, hard: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes separated with margin 0.8 on axis 0 only.

    Axis 1 carries a larger, noisy class signal that is flipped on the ``hard`` rows. A strong
    l2 follows the class means, i.e. mostly axis 1, and gets the hard rows wrong; a weak one
    finds axis 0 and gets every row right; rows that are not hard are right either way.
    """
    labels = torch.arange(n) % 2
    sign = 2.0 * labels - 1.0
    margin = sign * (0.4 + 0.05 * torch.rand(n, generator=generator))
    flip = torch.where(hard, -1.0, 1.0)
    decoy = flip * sign + 0.3 * torch.randn(n, generator=generator)
    nuisance = 0.3 * torch.randn(n, generator=generator)
    return torch.stack([margin, decoy, nuisance], dim=1), labels


def test_a_tied_plateau_does_not_pick_its_under_fitting_strong_edge() -> None:
    generator = torch.Generator().manual_seed(0)
    n = 400
    _, val_index = _validation_split(n, 0.2, seed=0)
    hard = torch.rand(n, generator=generator) < 0.15
    hard[val_index] = False  # only the fitted part sees hard rows: every l2 aces the held-out part
    train_x, train_y = _plateau_rows(n, hard, generator)
    test_x, test_y = _plateau_rows(1000, torch.rand(1000, generator=generator) < 0.15, generator)

    ours, probe = linear_probe_accuracy(train_x, train_y, test_x, test_y, seed=0)
    assert set(probe.val_accuracy.values()) == {1.0}  # one plateau over the whole grid
    theirs = {
        l2: _sklearn_test_accuracy(train_x, train_y, test_x, test_y, l2) for l2 in DEFAULT_L2_GRID
    }
    strongest, best = max(DEFAULT_L2_GRID), max(theirs.values())
    assert theirs[strongest] < best - 0.05  # the strong edge under-fits (about 87 % vs 100 %)
    assert probe.l2 != strongest
    assert theirs[probe.l2] == best
    assert ours >= best - 0.002


def test_select_l2_on_hand_made_tables() -> None:
    grid = list(DEFAULT_L2_GRID)  # strongest first: 1e-1, 2e-2, 4e-3, 7e-4, 1.5e-4, 3e-5, ...
    # Everything tied: the middle of 8 points, the weaker of the two middle ones (index 4).
    assert select_l2(grid, [1.0] * 8) == 1.5e-4
    # An odd plateau at indices 2..4: its middle, index 3.
    assert select_l2(grid, [0.8, 0.9, 0.95, 0.95, 0.95, 0.9, 0.85, 0.8]) == 7e-4
    # The grid's order does not matter, only the l2 values.
    shuffled = [3, 0, 7, 5, 1, 4, 6, 2]
    table = [0.8, 0.9, 0.95, 0.95, 0.95, 0.9, 0.85, 0.8]
    assert select_l2([grid[i] for i in shuffled], [table[i] for i in shuffled]) == 7e-4
    # Two runs of best: the longer one (indices 3..5, middle 4) wins over the strong pair.
    assert select_l2(grid, [0.95, 0.95, 0.9, 0.95, 0.95, 0.95, 0.8, 0.8]) == 1.5e-4
    # Two runs of equal length: the weaker run (indices 5..6), then its weaker middle (6).
    assert select_l2(grid, [0.95, 0.95, 0.9, 0.9, 0.9, 0.95, 0.95, 0.8]) == 5e-6
    # A single best point is chosen as is, even at the strong edge.
    assert select_l2(grid, [0.99, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]) == 1e-1
    # Counts out of 50 held-out rows: one sample below the best ties only with a tolerance.
    counts = [49, 50, 49, 49, 45, 44, 40, 40]
    assert select_l2(grid, [c / 50 for c in counts]) == 2e-2
    assert select_l2(grid, [c / 50 for c in counts], tolerance=1 / 50) == 4e-3  # indices 0..3
    assert select_l2(grid, [c / 50 for c in counts], tolerance=6 / 50) == 7e-4  # indices 0..5
    # 1 - 1/3 rounds differently from 2/3: still a tie.
    thirds = [2 / 3, 1.0, 2 / 3, 2 / 3]
    assert select_l2([1e-1, 1e-2, 1e-3, 1e-4], thirds, tolerance=1 / 3) == 1e-3
    # A grid with 0 and a single-point grid.
    assert select_l2([0.0, 1e-2, 1e-3], [1.0, 1.0, 1.0]) == 1e-3
    assert select_l2([0.0, 1e-2, 1e-3], [0.9, 0.7, 0.5]) == 0.0
    assert select_l2([3e-3], [0.4]) == 3e-3


@pytest.mark.parametrize(
    ("grid", "accuracies", "tolerance", "message"),
    [
        ([1e-1, 1e-2], [0.9], 0.0, "grid has 2 values but accuracies has 1"),
        ([], [], 0.0, "grid is empty"),
        ([1e-1, 1e-1], [0.9, 0.8], 0.0, "duplicate l2 values"),
        ([1e-1, -1.0], [0.9, 0.8], 0.0, "grid contains -1.0; allowed l2 values are finite"),
        ([1e-1, 1e-2], [0.9, float("nan")], 0.0, "accuracies contains nan"),
        ([1e-1, 1e-2], [0.9, 0.8], -0.1, "tolerance must be finite and >= 0, got -0.1"),
    ],
)
def test_select_l2_bad_input(grid, accuracies, tolerance: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_l2(grid, accuracies, tolerance=tolerance)


def test_fit_ties_held_out_accuracies_one_sample_apart() -> None:
    # 50 held-out rows; here the counts are 23, 36, 35, 32, ...: 36 alone is the best, 35 is one
    # sample behind, so the plateau is 2e-2..4e-3 and the weaker middle point 4e-3 is chosen.
    features, labels = _gaussian_classes(250, 200, 2, separation=1.5, seed=3)
    probe = fit_linear_probe(features, labels, seed=0)
    grid, accuracies = list(probe.val_accuracy), list(probe.val_accuracy.values())
    assert probe.l2 == select_l2(grid, accuracies, tolerance=1 / 50)
    assert select_l2(grid, accuracies) != probe.l2  # exact ties would have chosen otherwise


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
        ({"solver": "newton"}, r"solver must be one of \['custom', 'torch_lbfgs'\], got 'newton'"),
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


def _objective_and_gradient(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    l2: float,
) -> tuple[float, torch.Tensor]:
    """``mean CE + l2 ||W||^2`` and its gradient, written out in float64 on uncentred features."""
    x, weight, bias = features.double(), weight.double(), bias.double()
    logits = x @ weight.t() + bias
    log_probs = logits - logits.logsumexp(dim=1, keepdim=True)
    loss = -log_probs[torch.arange(len(labels)), labels].mean() + l2 * weight.pow(2).sum()
    residual = (log_probs.exp() - F.one_hot(labels, weight.shape[0]).double()) / len(labels)
    gradient = torch.cat([(residual.t() @ x + 2.0 * l2 * weight).ravel(), residual.sum(dim=0)])
    return loss.item(), gradient


@pytest.mark.parametrize("solver", ["custom", "torch_lbfgs"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_solvers_reach_the_sklearn_optimum(solver: str, dtype: torch.dtype) -> None:
    features, labels = _gaussian_classes(800, 24, 4, separation=2.0, seed=8, offset=3.0)
    l2 = 5e-4
    probe = fit_linear_probe(
        features, labels, l2_grid=[l2], dtype=dtype, tol=1e-6, max_iter=2000, solver=solver
    )
    reference = LogisticRegression(C=_sklearn_c(l2, 800, 4), tol=1e-12, max_iter=20_000)
    reference.fit(features.double().numpy(), labels.numpy())
    optimum, _ = _objective_and_gradient(
        features,
        labels,
        torch.from_numpy(reference.coef_),
        torch.from_numpy(reference.intercept_),
        l2,
    )
    loss, gradient = _objective_and_gradient(features, labels, probe.weight, probe.bias, l2)
    # Convex objective: sklearn's value is the optimum up to its own (tiny) tolerance. Stopping at
    # max |grad| <= 1e-6 with 100 parameters and curvature >= 2 * l2 = 1e-3 along the weights
    # leaves at most 100 * 1e-12 / (2 * 1e-3) = 5e-8 above it; float32 rounding adds more.
    assert loss >= optimum - 1e-9
    assert loss - optimum <= (1e-7 if dtype == torch.float64 else 1e-6)
    assert gradient.abs().max().item() <= (1e-5 if dtype == torch.float64 else 1e-4)


def test_solvers_choose_the_same_l2_and_agree_on_accuracy() -> None:
    features, labels = _anisotropic_classes(2000, 32, 3, separation=0.3, seed=11)
    train_x, train_y, test_x, test_y = (
        features[:1000],
        labels[:1000],
        features[1000:],
        labels[1000:],
    )
    custom, custom_probe = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    torch_, torch_probe = linear_probe_accuracy(
        train_x, train_y, test_x, test_y, solver="torch_lbfgs"
    )
    assert torch_probe.l2 == custom_probe.l2
    assert list(torch_probe.val_accuracy) == list(custom_probe.val_accuracy)
    for l2, accuracy in custom_probe.val_accuracy.items():
        assert abs(torch_probe.val_accuracy[l2] - accuracy) <= 2 / 200  # 200 held-out rows
    assert abs(torch_ - custom) <= 0.005
    again = fit_linear_probe(train_x, train_y, solver="torch_lbfgs")
    assert torch.equal(again.weight, torch_probe.weight)  # deterministic
