"""Time our torch linear probe against scikit-learn's lbfgs LogisticRegression on the same task.

Both sides get the same synthetic features (Gaussian class means plus isotropic noise, rows
l2-normalised like CLIP features), the same held-out split, the same l2 grid (converted to C as
``C = 1 / (2 * l2 * n)``), the same stopping tolerance and iteration cap, the same rule for picking
l2 (best held-out accuracy, ties to the stronger l2) and the same refit on the whole train split.
scikit-learn fits every grid point from zero (its default); ours warm-starts along the grid.

    python benchmarks/linear_probe_vs_sklearn.py            # 10000x512 (100 cls), 50000x768 (10)
    python benchmarks/linear_probe_vs_sklearn.py --quick    # smaller sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.evaluation.linear_probe import (
    DEFAULT_L2_GRID,
    _validation_split,
    fit_linear_probe,
    select_l2,
)

# (train rows, feature dim, classes, class-mean norm); the norms put test accuracy near 80-90 %.
FULL_SIZES = ((10_000, 512, 100, 0.2), (50_000, 768, 10, 0.09))
QUICK_SIZES = ((2_000, 128, 20, 0.3), (5_000, 256, 10, 0.15))


def make_features(
    n: int, dim: int, num_classes: int, separation: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``normalise(separation * mu_y + noise)``: unit class means mu, noise ~ N(0, I / dim)."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=generator), dim=1)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    noise = torch.randn(n, dim, generator=generator) / dim**0.5
    features = torch.nn.functional.normalize(separation * means[labels] + noise, dim=1)
    return features, labels


def sklearn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    grid: list[float],
    *,
    val_fraction: float,
    seed: int,
    max_iter: int,
    tol: float,
) -> tuple[LogisticRegression, float, int]:
    """Same protocol as ``fit_linear_probe`` with scikit-learn; returns (model, l2, warnings)."""
    fit_index, val_index = (i.numpy() for i in _validation_split(len(train_y), val_fraction, seed))
    # Convert and split once (lbfgs works in float64), so no fit pays for a copy of its own.
    x = np.ascontiguousarray(train_x, dtype=np.float64)
    fit_x, fit_y, val_x, val_y = x[fit_index], train_y[fit_index], x[val_index], train_y[val_index]
    accuracies: dict[float, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for l2 in sorted(grid, reverse=True):
            model = LogisticRegression(
                C=1.0 / (2.0 * l2 * len(fit_y)), solver="lbfgs", max_iter=max_iter, tol=tol
            )
            model.fit(fit_x, fit_y)
            accuracies[l2] = float((model.predict(val_x) == val_y).mean())
        # The package's tie rule: one held-out sample either way counts as a tie.
        best_l2 = select_l2(list(accuracies), list(accuracies.values()), tolerance=1.0 / len(val_y))
        model = LogisticRegression(
            C=1.0 / (2.0 * best_l2 * len(train_y)), solver="lbfgs", max_iter=max_iter, tol=tol
        )
        model.fit(x, train_y)
    n_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, best_l2, n_warnings


default_threads = torch.get_num_threads()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(
    n: int, dim: int, num_classes: int, separation: float, args: argparse.Namespace
) -> dict[str, float | int | str]:
    n_test = max(1_000, n // 5)
    features, labels = make_features(n + n_test, dim, num_classes, separation, args.seed)
    train_x, train_y = features[:n], labels[:n]
    test_x, test_y = features[n:], labels[n:]
    device = torch.device(args.device)
    # Our probe runs where the features are (a GPU with --device cuda); scikit-learn on the CPU.
    ours_x, ours_y = train_x.to(device), train_y.to(device)
    grid = list(DEFAULT_L2_GRID)

    # Each side runs with its default thread pools and capped to one thread, and its faster
    # time counts: with two OpenBLAS copies and two OpenMP runtimes in one process, the defaults
    # can oversubscribe a small or busy machine. --threads fixes one cap for both instead.
    caps = [None, 1] if args.threads is None else [args.threads]
    ours_times: dict[str, list[float]] = {str(cap or "default"): [] for cap in caps}
    sklearn_times: dict[str, list[float]] = {str(cap or "default"): [] for cap in caps}
    for _ in range(args.repeat):  # interleaved, best of N: robust to a busy machine
        for cap in caps:
            with threadpool_limits(limits=cap):
                torch.set_num_threads(cap or default_threads)
                _synchronize(device)
                start = time.perf_counter()
                probe = fit_linear_probe(
                    ours_x,
                    ours_y,
                    num_classes=num_classes,
                    l2_grid=grid,
                    val_fraction=args.val_fraction,
                    seed=args.seed,
                    max_iter=args.max_iter,
                    tol=args.tol,
                )
                _synchronize(device)
                ours_times[str(cap or "default")].append(time.perf_counter() - start)
                torch.set_num_threads(default_threads)

                start = time.perf_counter()
                model, sk_l2, sk_warnings = sklearn_probe(
                    train_x.numpy(),
                    train_y.numpy(),
                    grid,
                    val_fraction=args.val_fraction,
                    seed=args.seed,
                    max_iter=args.max_iter,
                    tol=args.tol,
                )
                sklearn_times[str(cap or "default")].append(time.perf_counter() - start)
    ours_s = min(min(times) for times in ours_times.values())
    sklearn_s = min(min(times) for times in sklearn_times.values())
    ours_acc = (probe.predict(test_x.to(device)).cpu() == test_y).double().mean().item()
    sklearn_acc = float((model.predict(test_x.numpy()) == test_y.numpy()).mean())

    return {
        "size": f"{n}x{dim}, {num_classes} cls",
        "n": n,
        "dim": dim,
        "num_classes": num_classes,
        "separation": separation,
        "n_test": n_test,
        "ours_device": str(device),
        "ours_s": ours_s,
        "sklearn_s": sklearn_s,
        "ours_s_all_by_thread_cap": ours_times,
        "sklearn_s_all_by_thread_cap": sklearn_times,
        "speedup": sklearn_s / ours_s,
        "ours_acc": ours_acc,
        "sklearn_acc": sklearn_acc,
        "acc_diff_points": 100.0 * (ours_acc - sklearn_acc),
        "ours_l2": probe.l2,
        "sklearn_l2": sk_l2,
        "sklearn_convergence_warnings": sk_warnings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/linear_probe.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timings are the best of N runs")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="cap both sides to N threads (default: each side's best of its default and 1)",
    )
    parser.add_argument(
        "--device", default="cpu", help="where our probe runs: cpu (default) or cuda[:N]"
    )
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--max-iter", type=int, default=None, help="default: the probe's own")
    parser.add_argument("--tol", type=float, default=None, help="default: the probe's own")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available; use --device cpu")
    try:
        torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device; use cpu or cuda[:N]")

    defaults = fit_linear_probe.__kwdefaults__
    args.max_iter = defaults["max_iter"] if args.max_iter is None else args.max_iter
    args.tol = defaults["tol"] if args.tol is None else args.tol

    rows = [run_case(*size, args) for size in (QUICK_SIZES if args.quick else FULL_SIZES)]

    header = ("size", "ours s", "sklearn s", "ratio", "ours acc", "sklearn acc", "acc diff")
    print(" | ".join(f"{h:>22}" if i == 0 else f"{h:>11}" for i, h in enumerate(header)))
    for row in rows:
        print(
            f"{row['size']:>22} | {row['ours_s']:>11.2f} | {row['sklearn_s']:>11.2f} | "
            f"{row['speedup']:>10.1f}x | {row['ours_acc']:>11.4f} | {row['sklearn_acc']:>11.4f} | "
            f"{row['acc_diff_points']:>+10.2f}pt"
        )

    report = {
        "benchmark": "linear_probe_vs_sklearn",
        "settings": {
            "quick": args.quick,
            "repeat": args.repeat,
            "seed": args.seed,
            "val_fraction": args.val_fraction,
            "max_iter": args.max_iter,
            "tol": args.tol,
            "device": args.device,
            "l2_grid": list(DEFAULT_L2_GRID),
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_default_threads": default_threads,
            "threads_cap": args.threads,
            "machine": platform.machine(),
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
