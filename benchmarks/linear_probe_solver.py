"""Which L-BFGS should the linear probe use? The hand-written one against torch.optim.LBFGS.

Two measurements, both in one process with interleaved repetitions whose order rotates:

* **evaluation**: what ``ConceptForgettingCallback`` does for one encoder after an epoch
  (``encoder_accuracies``: feature extraction of every suite dataset's train and test split, the
  probe per dataset, zero-shot), with the shipped tiny CLIP (``ldifs-tiny-vit``, ``demo``) on
  the embedded domains, at the callback's default caps (2000 train / 1000 test) and at full size.
  Per round: the whole evaluation's time with each solver, the probe's share of it, and the ratio
  custom / torch; the report gives medians of the per-round values.
* **probe**: ``fit_linear_probe`` alone on ViT-B/32-sized synthetic features (10000 x 512, 100
  classes, as in ``linear_probe_vs_sklearn.py``) with both solvers in float32 and float64, and
  scikit-learn's ``LogisticRegression(solver="lbfgs")`` on the same protocol (same split, grid,
  tolerance, cap, choice rule, refit) in the same dtypes, warm-started along the grid and for the
  refit (``warm_start=True``), as ours are.

Every side runs on one thread (torch and the BLAS/OpenMP pools; ``--threads`` changes it):

    OMP_NUM_THREADS=1 python benchmarks/linear_probe_solver.py            # a few minutes
    OMP_NUM_THREADS=1 python benchmarks/linear_probe_solver.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.data import list_datasets
from ldifs_lightning.evaluation import forgetting
from ldifs_lightning.evaluation.linear_probe import (
    DEFAULT_L2_GRID,
    SOLVERS,
    _validation_split,
    fit_linear_probe,
    linear_probe_accuracy,
    select_l2,
)
from ldifs_lightning.evaluation.suite import registry_suite
from ldifs_lightning.models import (
    create_clip,
    get_tokenizer,
    image_size_of,
    zero_shot_class_embeddings,
)

MODEL, WEIGHTS = "ldifs-tiny-vit", "demo"
SUITE = ("digits", "fashion", "shapes", "textures")
#: (name, max_train_samples, max_test_samples): the callback's defaults, then whole splits.
CAPS = (("default caps", 2000, 1000), ("full size", None, None))
QUICK_CAPS = (("quick caps", 300, 200),)
PROBE_SIZE = (10_000, 512, 100, 0.2)  # rows, dim, classes, class-mean norm (about 90 % accuracy)
QUICK_PROBE_SIZE = (1_000, 32, 5, 0.5)
PROBE_SIDES = (
    "custom/float32",
    "torch_lbfgs/float32",
    "sklearn/float32",
    "custom/float64",
    "torch_lbfgs/float64",
    "sklearn/float64",
)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _load_make_features() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``make_features`` of ``linear_probe_vs_sklearn.py``: both benchmarks use the same data."""
    path = Path(__file__).with_name("linear_probe_vs_sklearn.py")
    spec = importlib.util.spec_from_file_location("linear_probe_vs_sklearn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_features


def _rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """Round r runs ``names`` rotated by r, so no side always goes first."""
    return [[names[(r + i) % len(names)] for i in range(len(names))] for r in range(rounds)]


# ----------------------------------------------------------------------------- evaluation
def _timed_probe(solver: str, probe_seconds: list[float]) -> Callable[..., Any]:
    """``linear_probe_accuracy`` with ``solver``, adding each call's time to ``probe_seconds``."""

    @functools.wraps(linear_probe_accuracy)
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return linear_probe_accuracy(*args, solver=solver, **kwargs)
        finally:
            probe_seconds.append(time.perf_counter() - start)

    return run


def evaluation_case(
    name: str,
    max_train: int | None,
    max_test: int | None,
    suite: Sequence[str],
    rounds: int,
    root: str,
) -> dict[str, Any]:
    """Time the callback's per-epoch evaluation of the demo encoder with each solver.

    That evaluation is ``encoder_accuracies`` as ``ConceptForgettingCallback`` calls it (both
    metrics, its default batch size, no feature cache for a trained encoder, probe seed 0).
    """
    clip = create_clip(MODEL, WEIGHTS).eval()
    encoder = clip.visual
    members = registry_suite(suite, root, image_size_of(encoder), max_train, max_test)
    tokenizer = get_tokenizer(MODEL)
    embeddings = {
        d.name: zero_shot_class_embeddings(clip, tokenizer, d.classnames, d.templates)
        for d in members
    }
    sizes = {d.name: [len(d.train), len(d.test)] for d in members}
    times: dict[str, list[float]] = {solver: [] for solver in SOLVERS}
    probe_times: dict[str, list[float]] = {solver: [] for solver in SOLVERS}
    accuracies: dict[str, dict[str, float]] = {}
    original = forgetting.linear_probe_accuracy
    try:
        # One untimed warm-up per solver (first-call allocations, lazy imports), then the rounds.
        for index, order in enumerate([list(SOLVERS), *_rotations(SOLVERS, rounds)]):
            for solver in order:
                probe_seconds: list[float] = []
                forgetting.linear_probe_accuracy = _timed_probe(solver, probe_seconds)
                start = time.perf_counter()
                metrics = forgetting.encoder_accuracies(
                    encoder, members, class_embeddings=embeddings, device="cpu", cache=None
                )
                elapsed = time.perf_counter() - start
                accuracies[solver] = {d: row["lp_acc"] for d, row in metrics.items()}
                if index:
                    times[solver].append(elapsed)
                    probe_times[solver].append(sum(probe_seconds))
    finally:
        forgetting.linear_probe_accuracy = original
    custom, torch_ = times["custom"], times["torch_lbfgs"]
    ratios = [a / b for a, b in zip(custom, torch_, strict=True)]
    return {
        "case": name,
        "max_train_samples": max_train,
        "max_test_samples": max_test,
        "train_test_sizes": sizes,
        "evaluation_s": times,
        "probe_s": probe_times,
        "evaluation_s_median": {s: statistics.median(t) for s, t in times.items()},
        "probe_s_median": {s: statistics.median(t) for s, t in probe_times.items()},
        "probe_share_median": {
            s: statistics.median(p / t for p, t in zip(probe_times[s], times[s], strict=True))
            for s in SOLVERS
        },
        # Features and zero-shot, the same work for both solvers: should match within noise.
        "rest_s_median": {
            s: statistics.median(t - p for t, p in zip(times[s], probe_times[s], strict=True))
            for s in SOLVERS
        },
        # What the custom solver saves per round, as a share of the torch_lbfgs evaluation.
        "probe_saving_share_median": statistics.median(
            (pt - pc) / t
            for pc, pt, t in zip(
                probe_times["custom"], probe_times["torch_lbfgs"], torch_, strict=True
            )
        ),
        "time_ratio_custom_over_torch": ratios,
        "time_ratio_custom_over_torch_median": statistics.median(ratios),
        "lp_acc": accuracies,
        "lp_acc_max_abs_diff_points": max(
            abs(accuracies["custom"][d] - accuracies["torch_lbfgs"][d]) for d in suite
        ),
    }


# ----------------------------------------------------------------------------- probe alone
def sklearn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    grid: Sequence[float],
    *,
    val_fraction: float,
    seed: int,
    max_iter: int,
    tol: float,
) -> tuple[LogisticRegression, float, int]:
    """``fit_linear_probe``'s protocol with scikit-learn, warm-started along the grid and for the
    refit; keeps ``train_x``'s dtype. Returns (refitted model, chosen l2, convergence warnings).
    """
    fit_index, val_index = (i.numpy() for i in _validation_split(len(train_y), val_fraction, seed))
    fit_x, fit_y = train_x[fit_index], train_y[fit_index]
    val_x, val_y = train_x[val_index], train_y[val_index]
    model = LogisticRegression(solver="lbfgs", max_iter=max_iter, tol=tol, warm_start=True)
    accuracies: dict[float, float] = {}
    solutions: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for l2 in sorted(grid, reverse=True):
            # C = 1 / (2 l2 n): scikit-learn's objective is then ours, mean CE + l2 ||W||^2.
            model.set_params(C=1.0 / (2.0 * l2 * len(fit_y)))
            model.fit(fit_x, fit_y)
            accuracies[l2] = float((model.predict(val_x) == val_y).mean())
            solutions[l2] = (model.coef_.copy(), model.intercept_.copy())
        best_l2 = select_l2(list(accuracies), list(accuracies.values()), tolerance=1 / len(val_y))
        model.coef_, model.intercept_ = solutions[best_l2]  # the refit starts from its solution
        model.set_params(C=1.0 / (2.0 * best_l2 * len(train_y)))
        model.fit(train_x, train_y)
    n_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, best_l2, n_warnings


def objective_value(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    l2: float,
) -> float:
    """``mean CE(x W^T + b, y) + l2 ||W||^2`` in float64, the objective every side minimises."""
    weight, bias = weight.double(), bias.double()
    logits = features.double() @ weight.t() + bias
    return (F.cross_entropy(logits, labels) + l2 * weight.pow(2).sum()).item()


def probe_case(
    n: int, dim: int, num_classes: int, separation: float, rounds: int, seed: int
) -> dict[str, Any]:
    """``fit_linear_probe`` with both solvers and scikit-learn, float32 and float64, interleaved."""
    n_test = max(1_000, n // 5)
    features, labels = _load_make_features()(n + n_test, dim, num_classes, separation, seed)
    train_x, train_y, test_x, test_y = features[:n], labels[:n], features[n:], labels[n:]
    defaults = fit_linear_probe.__kwdefaults__
    max_iter, tol = defaults["max_iter"], defaults["tol"]
    times: dict[str, list[float]] = {side: [] for side in PROBE_SIDES}
    outcome: dict[str, dict[str, Any]] = {}
    for order in _rotations(PROBE_SIDES, rounds):
        for side in order:
            solver, dtype_name = side.split("/")
            if solver == "sklearn":
                x = train_x.numpy().astype(dtype_name)
                start = time.perf_counter()
                model, l2, n_warnings = sklearn_probe(
                    x, train_y.numpy(), DEFAULT_L2_GRID, val_fraction=0.2, seed=seed,
                    max_iter=max_iter, tol=tol,
                )  # fmt: skip
                times[side].append(time.perf_counter() - start)
                weight, bias = torch.from_numpy(model.coef_), torch.from_numpy(model.intercept_)
                extra = {"convergence_warnings": n_warnings}
            else:
                start = time.perf_counter()
                probe = fit_linear_probe(
                    train_x, train_y, num_classes=num_classes, seed=seed, dtype=DTYPES[dtype_name],
                    solver=solver,
                )  # fmt: skip
                times[side].append(time.perf_counter() - start)
                weight, bias, l2, extra = probe.weight, probe.bias, probe.l2, {}
            predictions = (test_x.double() @ weight.double().t() + bias.double()).argmax(dim=1)
            outcome[side] = {
                "l2": l2,
                "test_acc": (predictions == test_y).double().mean().item(),
                "objective": objective_value(train_x, train_y, weight, bias, l2),
                **extra,
            }
    medians = {side: statistics.median(t) for side, t in times.items()}

    def ratio(numerator: str, denominator: str) -> float:
        pairs = zip(times[numerator], times[denominator], strict=True)
        return statistics.median(a / b for a, b in pairs)

    return {
        "size": f"{n}x{dim}, {num_classes} classes",
        "n": n,
        "dim": dim,
        "num_classes": num_classes,
        "separation": separation,
        "n_test": n_test,
        "max_iter": max_iter,
        "tol": tol,
        "seconds": times,
        "seconds_median": medians,
        "time_ratio_median": {
            "custom/torch_lbfgs float32": ratio("custom/float32", "torch_lbfgs/float32"),
            "custom/torch_lbfgs float64": ratio("custom/float64", "torch_lbfgs/float64"),
            "sklearn/custom float32": ratio("sklearn/float32", "custom/float32"),
            "sklearn/torch_lbfgs float32": ratio("sklearn/float32", "torch_lbfgs/float32"),
            "sklearn/custom float64": ratio("sklearn/float64", "custom/float64"),
            "sklearn/torch_lbfgs float64": ratio("sklearn/float64", "torch_lbfgs/float64"),
        },
        "outcome": outcome,
    }


# ----------------------------------------------------------------------------- main
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number (1, 2, ...)")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="linear_probe_solver.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shapes only at 300/200 samples, a small probe, 1 round",
    )
    parser.add_argument("--rounds", type=_positive, default=None, help="default 7 (quick: 1)")
    parser.add_argument("--probe-rounds", type=_positive, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--threads", type=_positive, default=1, help="torch and BLAS threads")
    parser.add_argument("--suite", nargs="+", default=None, help=f"default: {' '.join(SUITE)}")
    parser.add_argument("--root", default="data", help="dataset root (the demo domains need none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic probe features")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/linear_probe_solver.json")
    )
    args = parser.parse_args(argv)
    known = list_datasets()
    unknown = [name for name in args.suite or () if name not in known]
    if unknown:
        parser.error(f"--suite: unknown dataset {unknown[0]!r}; allowed: {', '.join(known)}")
    args.suite = args.suite or (["shapes"] if args.quick else list(SUITE))
    args.rounds = args.rounds or (1 if args.quick else 7)
    args.probe_rounds = args.probe_rounds or (1 if args.quick else 3)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        evaluation = [
            evaluation_case(name, train, test, args.suite, args.rounds, args.root)
            for name, train, test in (QUICK_CAPS if args.quick else CAPS)
        ]
        size = QUICK_PROBE_SIZE if args.quick else PROBE_SIZE
        probe = probe_case(*size, args.probe_rounds, args.seed)
    torch.set_num_threads(default_threads)

    for row in evaluation:
        medians, shares = row["evaluation_s_median"], row["probe_share_median"]
        print(
            f"evaluation, {row['case']}: custom {medians['custom']:.2f} s "
            f"(probe {100 * shares['custom']:.0f} %), torch_lbfgs {medians['torch_lbfgs']:.2f} s "
            f"(probe {100 * shares['torch_lbfgs']:.0f} %), custom/torch "
            f"{row['time_ratio_custom_over_torch_median']:.3f}, LP accuracies differ by at most "
            f"{row['lp_acc_max_abs_diff_points']:.2f} points"
        )
    print(f"probe alone, {probe['size']}:")
    for side in PROBE_SIDES:
        out = probe["outcome"][side]
        print(
            f"  {side:>20}: {probe['seconds_median'][side]:7.2f} s, l2 {out['l2']:.1e}, "
            f"test acc {100 * out['test_acc']:.2f}, objective {out['objective']:.6f}"
        )
    for name, value in probe["time_ratio_median"].items():
        print(f"  {name}: {value:.2f}")

    report = {
        "benchmark": "linear_probe_solver",
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "probe_rounds": args.probe_rounds,
            "threads": args.threads,
            "model": MODEL,
            "pretrained": WEIGHTS,
            "suite": args.suite,
            "seed": args.seed,
            "l2_grid": list(DEFAULT_L2_GRID),
            "solvers": list(SOLVERS),
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": args.threads,
            "torch_threads_at_start": default_threads,
            "machine": platform.machine(),
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
        "evaluation": evaluation,
        "probe": probe,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
