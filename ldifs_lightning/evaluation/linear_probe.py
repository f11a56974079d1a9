"""Multinomial logistic-regression probe on frozen features, fitted full-batch in torch.

The probe is what A_LP(f, d) in the design means: a linear classifier trained on the l2-normalised
features of a dataset's train split, its l2 strength chosen on a seeded held-out part of that split,
then refitted on the whole split. Everything runs on the device the features are on.

The default solver is a hand-written L-BFGS (``solver="custom"``); ``torch.optim.LBFGS`` with a
strong Wolfe line search (``solver="torch_lbfgs"``) minimises the same objective. The custom one
stays the default because it makes the forgetting callback's whole per-epoch evaluation
materially faster, with the same accuracies (``benchmarks/linear_probe_solver.py``; numbers and
the decision in ``benchmarks/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_L2_GRID",
    "LinearProbe",
    "Solver",
    "fit_linear_probe",
    "linear_probe_accuracy",
    "select_l2",
]

#: Roughly log-uniform from strong (1e-1) to weak (1e-6) regularisation, in the units of
#: ``fit_linear_probe`` (mean cross-entropy + l2 * ||W||^2).
DEFAULT_L2_GRID: tuple[float, ...] = (1e-1, 2e-2, 4e-3, 7e-4, 1.5e-4, 3e-5, 5e-6, 1e-6)

#: ``custom``: the hand-written L-BFGS below; ``torch_lbfgs``: ``torch.optim.LBFGS``.
Solver = Literal["custom", "torch_lbfgs"]
SOLVERS: tuple[str, ...] = ("custom", "torch_lbfgs")

_ARMIJO = 1e-4
_MAX_LINE_SEARCH = 20
_HISTORY_SIZE = 20
#: Held-out accuracies this many samples below the best still tie with it (see ``select_l2``).
_TIE_SAMPLES = 1


@dataclass
class LinearProbe:
    """A fitted linear classifier ``logits = features @ weight.T + bias``.

    Attributes:
        weight: ``[K, D]`` class weights.
        bias: ``[K]`` class biases.
        l2: The regularisation strength the probe was refitted with.
        val_accuracy: Held-out accuracy for every l2 that was tried, in the order tried.

    Example:
        >>> probe = LinearProbe(torch.eye(2), torch.zeros(2), l2=1e-3)
        >>> probe.predict(torch.tensor([[0.9, 0.1], [0.2, 0.8]])).tolist()
        [0, 1]
    """

    weight: Tensor
    bias: Tensor
    l2: float
    val_accuracy: dict[float, float] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return self.weight.shape[0]

    def logits(self, features: Tensor) -> Tensor:
        """Class scores ``[N, K]`` for ``features`` ``[N, D]``.

        Example:
            >>> LinearProbe(torch.eye(2), torch.ones(2), l2=0.0).logits(torch.ones(1, 2)).tolist()
            [[2.0, 2.0]]
        """
        if features.ndim != 2 or features.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"features must have shape [N, {self.weight.shape[1]}], got {tuple(features.shape)}"
            )
        weight = self.weight.to(device=features.device)
        bias = self.bias.to(device=features.device)
        return torch.addmm(bias, features.to(weight.dtype), weight.t())

    def predict(self, features: Tensor) -> Tensor:
        """Predicted class indices ``[N]`` (int64) for ``features`` ``[N, D]``.

        Example:
            >>> LinearProbe(torch.eye(2), torch.zeros(2), l2=0.0).predict(torch.eye(2)).tolist()
            [0, 1]
        """
        return self.logits(features).argmax(dim=1)


def _check_features_labels(features: Tensor, labels: Tensor, what: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"{what}_features must be 2-D [N, D], got shape {tuple(features.shape)}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"{what}_labels must have shape [{features.shape[0]}] to match {what}_features, "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{what}_labels must be an integer tensor, got dtype {labels.dtype}")
    if features.shape[0] == 0:
        raise ValueError(f"{what}_features is empty; need at least one row")
    if not features.is_floating_point():
        raise ValueError(f"{what}_features must be floating point, got dtype {features.dtype}")


def _check_label_range(labels: Tensor, num_classes: int, what: str) -> None:
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{what}_labels contains {bad}; allowed labels are 0..{num_classes - 1}")


def _validation_split(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Random (train, val) index split that depends only on ``n`` and ``seed``."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    return order[n_val:], order[:n_val]


class _Objective:
    """Mean cross-entropy + l2 * ||W||^2 over flat parameters ``[W.ravel(), b]``.

    The gradient is written by hand (two matmuls, no autograd graph) and the loss is reduced in
    float64 so that line-search comparisons stay meaningful when the fit runs in float32.
    """

    def __init__(self, features: Tensor, labels: Tensor, num_classes: int) -> None:
        self.features = features
        self.n, self.dim = features.shape
        self.num_classes = num_classes
        self.labels = labels[:, None]
        # Upper bound on the gradient's Lipschitz constant: the softmax Hessian is <= I/2 and
        # lambda_max([X, 1]^T [X, 1] / n) <= mean ||x||^2 + 1; 1/L is a safe first step.
        mean_square_norm = torch.linalg.vector_norm(features).item() ** 2 / self.n
        self.lipschitz_data = 0.5 * (mean_square_norm + 1.0)
        self.feature_variance = mean_square_norm / max(self.dim, 1)  # per coordinate
        self.softmax_curvature = 1.0 / num_classes  # mean p(1 - p), updated by every call
        self.l2 = 0.0

    def weight_scale(self) -> float:
        """Bias curvature over weight curvature, per coordinate, at the last evaluated point.

        With centred features the Hessian's diagonal is about a * E[x_j^2] + 2 * l2 for a weight
        and a for a bias (a: mean softmax curvature p(1 - p)), so biases are ~D times stiffer
        than weights. One scalar initial Hessian (plain L-BFGS) cannot serve both; scaling the
        weight block by this ratio halved the iterations in benchmarks/linear_probe_vs_sklearn.
        """
        curvature = max(self.softmax_curvature, 1e-12)
        return curvature / max(curvature * self.feature_variance + 2.0 * self.l2, 1e-30)

    def split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        weight_size = self.num_classes * self.dim
        return params[:weight_size].view(self.num_classes, self.dim), params[weight_size:]

    def __call__(self, params: Tensor) -> tuple[float, Tensor]:
        weight, bias = self.split(params)
        logits = torch.addmm(bias, self.features, weight.t())
        logits.sub_(logits.amax(dim=1, keepdim=True))
        label_logits = logits.gather(1, self.labels)
        # Hand-rolled log-sum-exp: the clamp keeps exp() out of float32 subnormals, which are
        # very slow on CPUs (torch.logsumexp does not avoid them), even after the division by n
        # below; e^-50 is negligible next to the largest term, 1.
        probs = logits.clamp_min_(-50.0).exp_()
        normaliser = probs.sum(dim=1, keepdim=True)
        data_loss = (normaliser.log() - label_logits).sum(dtype=torch.float64).item()
        loss = data_loss / self.n + self.l2 * weight.pow(2).sum(dtype=torch.float64).item()
        # d(mean CE)/d(logits) = (softmax - one_hot) / n, built in place in the logits buffer;
        # scatter_ (not scatter_add_) writes one entry per row, deterministically on any device.
        probs.div_(normaliser)
        curvature = probs.sum() - torch.linalg.vector_norm(probs).square()
        self.softmax_curvature = curvature.item() / probs.numel()
        residual = probs.div_(self.n)
        residual.scatter_(1, self.labels, residual.gather(1, self.labels).sub_(1.0 / self.n))
        grad = torch.empty_like(params)
        grad_weight, grad_bias = self.split(grad)
        torch.addmm(weight, residual.t(), self.features, beta=2.0 * self.l2, out=grad_weight)
        torch.sum(residual, dim=0, out=grad_bias)
        return loss, grad


class _History:
    """L-BFGS curvature pairs in the compact form of Byrd, Nocedal and Schnabel (1994).

    The initial inverse Hessian is ``gamma * diag(h)`` with h = ``scale`` on the weight entries
    and 1 on the biases (see ``_Objective.weight_scale``). Pairs live as rows of two
    ``[size, P]`` ring buffers, so a direction takes a few matrix-vector products and
    ``size x size`` solves instead of the two-loop recursion's ~4 * size vector operations
    (fewer kernels and thread wake-ups). The pairs are kept across fits: changing l2 shifts
    every y by exactly 2 * delta_l2 * s on the weight entries.
    """

    def __init__(self, size: int, params: Tensor, weight_size: int) -> None:
        self.size = size
        self.weight_size = weight_size
        self.steps = params.new_empty((size, params.numel()))
        self.diffs = params.new_empty((size, params.numel()))
        # Inner products between stored pairs, indexed by slot: s_i . y_j, and y_i . y_j split
        # into its weight and bias parts so that any h is cheap.
        self.step_diff = torch.zeros((size, size), dtype=torch.float64)
        self.diff_diff_weight = torch.zeros((size, size), dtype=torch.float64)
        self.diff_diff_bias = torch.zeros((size, size), dtype=torch.float64)
        self.order: list[int] = []  # slots, oldest first
        self.l2 = 0.0

    def __len__(self) -> int:
        return len(self.order)

    def set_l2(self, l2: float) -> None:
        shift = 2.0 * (l2 - self.l2)
        self.l2 = l2
        if shift == 0.0 or not self.order:
            return
        used, w = len(self.order), self.weight_size
        steps, diffs = self.steps[:used], self.diffs[:used]
        diffs[:, :w].add_(steps[:, :w], alpha=shift)
        self.step_diff[:used, :used] = (steps @ diffs.t()).double().cpu()
        self.diff_diff_weight[:used, :used] = (diffs[:, :w] @ diffs[:, :w].t()).double().cpu()
        if any(self.step_diff[i, i] <= 0.0 for i in self.order):
            self.order = []  # curvature no longer positive along some pair: start afresh

    def push(self, step: Tensor, diff: Tensor) -> None:
        if step.dot(diff).item() <= 1e-10 * diff.dot(diff).item():
            return
        # Slots fill up in order, then the oldest is overwritten: slots [0, used) are live.
        slot = len(self.order) if len(self.order) < self.size else self.order.pop(0)
        self.order.append(slot)
        used, w = len(self.order), self.weight_size
        self.steps[slot] = step
        self.diffs[slot] = diff
        steps, diffs = self.steps[:used], self.diffs[:used]
        self.step_diff[slot, :used] = (diffs @ step).double().cpu()
        self.step_diff[:used, slot] = (steps @ diff).double().cpu()
        weight_part = (diffs[:, :w] @ diff[:w]).double().cpu()
        bias_part = (diffs[:, w:] @ diff[w:]).double().cpu()
        self.diff_diff_weight[slot, :used] = weight_part
        self.diff_diff_weight[:used, slot] = weight_part
        self.diff_diff_bias[slot, :used] = bias_part
        self.diff_diff_bias[:used, slot] = bias_part

    def direction(self, grad: Tensor, scale: float) -> Tensor:
        """-H grad, H = gamma diag(h) + [S, gamma diag(h) Y] M [S, gamma diag(h) Y]^T."""
        used, w = len(self.order), self.weight_size
        order = torch.tensor(self.order)
        steps, diffs = self.steps[:used], self.diffs[:used]
        scaled_grad = grad.clone()
        scaled_grad[:w].mul_(scale)
        step_grad = (steps @ grad).double().cpu()[order]
        diff_grad = (diffs @ scaled_grad).double().cpu()[order]
        step_diff = self.step_diff[order][:, order]
        diff_diff = (scale * self.diff_diff_weight + self.diff_diff_bias)[order][:, order]
        upper = torch.triu(step_diff)
        gamma = (step_diff[-1, -1] / diff_diff[-1, -1]).item()
        inv_r_a = torch.linalg.solve_triangular(upper, step_grad[:, None], upper=True)
        inner = (torch.diag(torch.diagonal(step_diff)) + gamma * diff_diff) @ inv_r_a
        inner -= gamma * diff_grad[:, None]
        u = torch.linalg.solve_triangular(upper.t(), inner, upper=False)[:, 0]
        # Back from chronological order to slots, then onto the big buffers.
        coefficients = torch.zeros((2, used), dtype=torch.float64)
        coefficients[0, order] = u
        coefficients[1, order] = -gamma * inv_r_a[:, 0]
        coefficients = coefficients.to(grad)
        diff_part = diffs.t() @ coefficients[1]
        diff_part[:w].mul_(scale)
        product = scaled_grad.mul_(gamma).add_(diff_part).addmv_(steps.t(), coefficients[0])
        return product.neg_()


def _minimise(
    objective: _Objective,
    params: Tensor,
    history: _History,
    *,
    max_iter: int,
    tol: float,
    start: tuple[float, Tensor] | None = None,
    first_scale: Tensor | None = None,
) -> tuple[Tensor, float, Tensor]:
    """L-BFGS from ``params`` until ``max |grad| <= tol`` or ``max_iter`` iterations.

    ``start`` is the objective's (loss, gradient) at ``params`` when the caller already knows it.
    Returns the new parameters with their loss and gradient.

    The line search leans on the directional derivative, which float32 resolves far better than
    loss differences near the optimum: by convexity a step whose end point still slopes downhill
    (or that passes Armijo) decreases the loss; an overshoot is cut back by a secant step on the
    directional derivative.
    """
    params = params.clone()
    loss, grad = objective(params) if start is None else start
    if first_scale is None:
        first_scale = torch.full_like(params, 1.0 / (objective.lipschitz_data + 2.0 * objective.l2))
    for _ in range(max_iter):
        if grad.abs().max().item() <= tol:
            break
        if len(history):
            direction, step = history.direction(grad, objective.weight_scale()), 1.0
        else:
            direction, step = None, 0.0
        slope = grad.dot(direction).item() if direction is not None else 0.0
        if direction is None or slope >= 0.0:
            direction, step = grad.neg().mul_(first_scale), 1.0
            slope = grad.dot(direction).item()
        for _ in range(_MAX_LINE_SEARCH):
            candidate = params.add(direction, alpha=step)
            new_loss, new_grad = objective(candidate)
            new_slope = new_grad.dot(direction).item()
            if new_slope <= 0.0 or new_loss <= loss + _ARMIJO * step * slope:
                break
            # Overshot the minimum along the line: secant root of the slope, kept inside.
            secant = step * -slope / (new_slope - slope)
            step = min(max(secant, 0.1 * step), 0.9 * step)
        else:
            break  # no acceptable step at this precision: as converged as it gets
        history.push(candidate - params, new_grad - grad)
        params, loss, grad = candidate, new_loss, new_grad
    return params, loss, grad


def _shift_l2(
    state: tuple[float, Tensor], params: Tensor, objective: _Objective, l2: float
) -> tuple[float, Tensor]:
    """(loss, grad) at ``params`` after the objective's l2 changes to ``l2``, with no data pass."""
    loss, grad = state
    weight, _ = objective.split(params)
    change = l2 - objective.l2
    grad = grad.clone()
    grad[: weight.numel()].add_(weight.reshape(-1), alpha=2.0 * change)
    return loss + change * weight.pow(2).sum(dtype=torch.float64).item(), grad


def _minimise_torch(objective: _Objective, params: Tensor, *, max_iter: int, tol: float) -> Tensor:
    """``torch.optim.LBFGS`` (strong Wolfe line search) on the same objective, from ``params``.

    Stops, like ``_minimise``, once ``max |grad| <= tol`` or after ``max_iter`` iterations (or
    when the loss stops changing by 1e-9, torch's ``tolerance_change``). The gradient comes from
    autograd. Returns the new parameters.
    """
    params = params.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [params],
        max_iter=max_iter,
        tolerance_grad=tol,
        history_size=_HISTORY_SIZE,
        line_search_fn="strong_wolfe",
    )
    labels = objective.labels[:, 0]

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=False)
        weight, bias = objective.split(params)
        logits = torch.addmm(bias, objective.features, weight.t())
        loss = F.cross_entropy(logits, labels) + objective.l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return params.detach()


def _accuracy(objective: _Objective, params: Tensor, features: Tensor, labels: Tensor) -> float:
    weight, bias = objective.split(params)
    predictions = torch.addmm(bias, features, weight.t()).argmax(dim=1)
    return (predictions == labels).to(torch.float64).mean().item()


def select_l2(
    grid: Sequence[float], accuracies: Sequence[float], *, tolerance: float = 0.0
) -> float:
    """The l2 in the middle of the widest plateau of (near-)best held-out accuracy.

    Grid points tie with the best when their accuracy is at least ``max(accuracies) -
    tolerance``. Among the maximal runs of tied points that are adjacent in the grid sorted from
    strong to weak, the longest wins (equal lengths: the weaker run), and its middle point is
    returned (even length: the weaker of the two middle points), so the result is deterministic.

    Why the middle: held-out accuracy saturates, so a stretch of l2 values can tie while an edge
    of it under-fits (strong side) or over-fits (weak side) in ways the held-out part cannot see;
    the middle is furthest from both, and on a log-spaced grid the middle index is the geometric
    middle (still defined when the grid contains 0). On synthetic probe problems (isotropic and
    anisotropic Gaussian classes) it lost less test accuracy to the best grid point, on average,
    than either the first (strongest) best or the weakest l2 within the tolerance.

    Args:
        grid: Candidate l2 strengths, in any order, without duplicates.
        accuracies: Held-out accuracy of each l2, aligned with ``grid``.
        tolerance: How far below the best accuracy still counts as a tie (>= 0).

    Returns:
        The chosen l2, one of ``grid``'s values.

    Example:
        >>> select_l2([1e-1, 1e-2, 1e-3, 1e-4, 1e-5], [0.9, 1.0, 1.0, 1.0, 0.95])
        0.001
        >>> select_l2([1e-1, 1e-2, 1e-3], [0.97, 1.0, 0.98], tolerance=0.025)
        0.001
    """
    if len(grid) != len(accuracies):
        raise ValueError(
            f"grid has {len(grid)} values but accuracies has {len(accuracies)}; give one "
            "accuracy per l2"
        )
    if not grid:
        raise ValueError("grid is empty; give at least one l2 value with its accuracy")
    bad_l2 = [value for value in grid if not (math.isfinite(value) and value >= 0.0)]
    if bad_l2:
        raise ValueError(f"grid contains {bad_l2[0]}; allowed l2 values are finite and >= 0")
    if len(set(grid)) != len(grid):
        raise ValueError(f"grid contains duplicate l2 values {list(grid)}; give each l2 once")
    bad = [value for value in accuracies if not math.isfinite(value)]
    if bad:
        raise ValueError(f"accuracies contains {bad[0]}; allowed values are finite numbers")
    if not (math.isfinite(tolerance) and tolerance >= 0.0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    pairs = sorted(zip(grid, accuracies, strict=True), key=lambda pair: pair[0], reverse=True)
    # The slack absorbs rounding in accuracies computed as count / n (e.g. 1 - 1/3 vs 2/3).
    threshold = max(accuracies) - tolerance - 1e-9
    best_start, best_length, start = 0, 0, None
    for index, (_, accuracy) in enumerate([*pairs, (0.0, -math.inf)]):
        if accuracy >= threshold:
            start = index if start is None else start
        elif start is not None:
            if index - start >= best_length:  # ">=": an equally long, weaker run wins
                best_start, best_length = start, index - start
            start = None
    return pairs[best_start + best_length // 2][0]


def fit_linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    *,
    num_classes: int | None = None,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
    solver: Solver = "custom",
) -> LinearProbe:
    """Fit a multinomial logistic-regression probe, choosing its l2 strength on held-out data.

    The objective is ``mean_i CE(W x_i + b, y_i) + l2 * ||W||_F^2`` (the bias is not penalised).
    scikit-learn's ``LogisticRegression`` minimises ``C * sum_i CE + 0.5 * ||W||^2`` instead,
    which has the same minimiser when ``l2 = 1 / (2 * C * n)`` with ``n`` the number of rows
    fitted on (equivalently ``C = 1 / (2 * l2 * n)``). With two classes scikit-learn fits one
    weight vector ``w = W[1] - W[0]`` and the optimum has ``W[0] = -W[1]``, so ``||W||^2 =
    ||w||^2 / 2`` there and the match is ``C = 1 / (l2 * n)``.

    Procedure: a random ``val_fraction`` of the rows (a permutation drawn from a CPU
    ``torch.Generator`` seeded with ``seed``, so it depends only on ``seed`` and N) is held out;
    the probe is fitted on the rest for every l2 in ``l2_grid`` from the strongest to the weakest,
    each fit warm-started from the previous solution; ``select_l2`` picks the middle of the
    widest run of grid points whose held-out accuracy is within one held-out sample of the best,
    and that l2 is refitted on all rows, warm-started from its solution. Held-out accuracy
    saturates, so taking the first (strongest) best would often land on a plateau's under-fitting
    edge; a one-sample difference is far below the split's binomial noise, so it counts as a tie.
    Each fit is full-batch L-BFGS (curvature memory carried along the grid, initial Hessian
    scaled separately for weights and biases) with a line search on the directional derivative,
    stopped when the largest absolute gradient entry falls below ``tol`` or after ``max_iter``
    iterations. Features are centred first, which only moves the unpenalised bias, so the
    optimum is unchanged. Runs on the device of ``train_features``; results are deterministic
    for a fixed seed on a given device.

    Args:
        train_features: ``[N, D]`` floating-point features (typically l2-normalised).
        train_labels: ``[N]`` integer labels in ``0..num_classes - 1``.
        num_classes: Number of classes K; defaults to ``train_labels.max() + 1``.
        l2_grid: Candidate l2 strengths (each >= 0); order does not matter.
        val_fraction: Fraction of rows held out to choose l2, in (0, 1).
        seed: Seed of the held-out split.
        max_iter: Cap on L-BFGS iterations per fit.
        tol: Stop once ``max |gradient| <= tol`` (same criterion as scikit-learn's ``tol``).
        dtype: Floating-point type the fit runs in (float32 by default, float64 optional).
        solver: ``custom`` (the hand-written L-BFGS described above) or ``torch_lbfgs``
            (``torch.optim.LBFGS`` with a strong Wolfe line search and autograd gradients, a
            fresh curvature memory per l2, warm-started along the grid like ``custom``).

    Returns:
        The refitted probe, with ``val_accuracy`` holding the held-out accuracy of each l2 tried.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(200, 8), dim=1)
        >>> y = (x[:, 0] > 0).long()
        >>> probe = fit_linear_probe(x, y)
        >>> (probe.predict(x) == y).float().mean().item() > 0.9
        True
    """
    _check_features_labels(train_features, train_labels, "train")
    n = train_features.shape[0]
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    _check_label_range(train_labels, num_classes, "train")
    n_present = int(torch.unique(train_labels).numel())
    if n_present < 2:
        raise ValueError(f"train_labels must contain at least 2 distinct classes, got {n_present}")
    grid = sorted({float(value) for value in l2_grid}, reverse=True)
    if not grid:
        raise ValueError("l2_grid is empty; give at least one l2 value >= 0")
    bad = [value for value in grid if not (math.isfinite(value) and value >= 0.0)]
    if bad:
        raise ValueError(f"l2_grid contains {bad[0]}; allowed values are finite and >= 0")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 training rows to hold some out, got {n}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol >= 0.0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")

    # One working copy, rows ordered [fit part, held-out part]: both parts are then views, and
    # the refit uses all rows as they are (the mean loss does not depend on row order).
    fit_index, val_index = _validation_split(n, val_fraction, seed)
    n_fit = fit_index.numel()
    order = torch.cat([fit_index, val_index]).to(train_features.device)
    features = train_features.detach()[order].to(dtype)
    labels = train_labels.detach()[order].to(torch.int64)
    # Centring only re-parametrises the (unpenalised) bias, so the optimum is unchanged, but it
    # removes the large common component of CLIP-like features and so conditions the problem.
    mean = features.mean(dim=0)
    features -= mean

    dim = features.shape[1]
    params = torch.zeros(num_classes * (dim + 1), dtype=dtype, device=features.device)
    history = _History(_HISTORY_SIZE, params, num_classes * dim)

    objective = _Objective(features[:n_fit], labels[:n_fit], num_classes)
    val_features, val_labels = features[n_fit:], labels[n_fit:]
    n_val = n - n_fit
    val_accuracy: dict[float, float] = {}
    solutions: dict[float, Tensor] = {}
    state: tuple[float, Tensor] | None = None
    # At zero the softmax is uniform, so the local curvature is about trace(C) / K for the
    # weights (C: feature covariance) plus 2 * l2, and 1 / K for the biases: a Newton-like
    # diagonal scale for the very first step, which a line search still guards.
    first_scale = torch.full_like(params, float(num_classes))
    first_scale[: num_classes * dim] = 1.0 / (
        torch.linalg.vector_norm(features).item() ** 2 / n / num_classes + 2.0 * grid[0]
    )
    for l2 in grid:
        if solver == "torch_lbfgs":
            objective.l2 = l2
            params = _minimise_torch(objective, params, max_iter=max_iter, tol=tol)
            val_accuracy[l2] = _accuracy(objective, params, val_features, val_labels)
            solutions[l2] = params
            continue
        if state is not None:
            state = _shift_l2(state, params, objective, l2)
        objective.l2 = l2
        history.set_l2(l2)
        params, loss, grad = _minimise(
            objective,
            params,
            history,
            max_iter=max_iter,
            tol=tol,
            start=state,
            first_scale=first_scale if state is None else None,
        )
        state = (loss, grad)
        accuracy = _accuracy(objective, params, val_features, val_labels)
        val_accuracy[l2] = accuracy
        solutions[l2] = params

    # One held-out sample either way is below what the split can resolve, so it counts as a tie.
    best_l2 = select_l2(grid, list(val_accuracy.values()), tolerance=_TIE_SAMPLES / n_val)
    best_params = solutions[best_l2]
    full = _Objective(features, labels, num_classes)
    full.l2 = best_l2
    if solver == "torch_lbfgs":
        params = _minimise_torch(full, best_params, max_iter=max_iter, tol=tol)
    else:
        history.set_l2(best_l2)
        params, _, _ = _minimise(full, best_params, history, max_iter=max_iter, tol=tol)
    weight, bias = full.split(params)
    weight = weight.clone()
    bias = bias - weight @ mean
    return LinearProbe(weight=weight, bias=bias, l2=best_l2, val_accuracy=val_accuracy)


def linear_probe_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    **kwargs: Any,
) -> tuple[float, LinearProbe]:
    """Fit a probe on the train split and return its test accuracy (a fraction) and the probe.

    Args:
        train_features: ``[N, D]`` train features.
        train_labels: ``[N]`` train labels.
        test_features: ``[M, D]`` test features.
        test_labels: ``[M]`` test labels.
        **kwargs: Passed to :func:`fit_linear_probe` (``num_classes``, ``l2_grid``, ``seed``, ...).

    Returns:
        ``(accuracy in [0, 1], fitted probe)``.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(300, 8), dim=1)
        >>> y = (x[:, 1] > 0).long()
        >>> accuracy, probe = linear_probe_accuracy(x[:200], y[:200], x[200:], y[200:])
        >>> accuracy > 0.9
        True
    """
    _check_features_labels(test_features, test_labels, "test")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features has {test_features.shape[1]} columns; train_features has "
            f"{train_features.shape[1]}, and they must match"
        )
    probe = fit_linear_probe(train_features, train_labels, **kwargs)
    _check_label_range(test_labels, probe.num_classes, "test")
    predictions = probe.predict(test_features.detach())
    correct = predictions == test_labels.to(device=predictions.device)
    return correct.to(torch.float64).mean().item(), probe
