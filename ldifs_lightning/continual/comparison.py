"""Every continual method on the embedded sequence, with the same budget, side by side.

    python -m ldifs_lightning.continual.comparison --out runs/continual-comparison
    make continual            # the same; `make results` copies it into docs/results/

Each method is one :func:`~ldifs_lightning.continual.run_continual` of ``configs/continual/demo``
(same tasks, epochs, seed and foreign suite) with another stage config from
``configs/continual/demo/`` and, for LDIFS, another reference. Writes ``<out>/<method>/`` (each
run), ``<out>/comparison.json`` (every run's matrix, metrics and options), ``<out>/metrics.csv``
and ``<out>/foreign.png``, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.callbacks.forgetting import DEFAULT_CACHE_DIR
from ldifs_lightning.config_files import shipped_configs_dir
from ldifs_lightning.continual.sequence import ReferenceChoice

#: The ``ldifs fit`` argument that sets a stage config's (only) regulariser weight.
_WEIGHT = "--model.init_args.regularizers.init_args.weight="


@dataclass(frozen=True)
class ComparedMethod:
    """One row of the comparison: a stage config, a reference and extra ``ldifs fit`` args."""

    config: str
    reference: ReferenceChoice = "previous"
    fit_args: tuple[str, ...] = ()


def _weighted(config: str, weight: float) -> ComparedMethod:
    return ComparedMethod(config, "previous", (f"{_WEIGHT}{weight:g}",))


#: label -> method, in the table's order; the reference is the previous stage's encoder unless
#: the label says "(original)". LDIFS runs at the lambda the single-task sweep chose
#: (docs/demo.md, 300; with the previous and the original encoder as reference) and at 30 and
#: 3000; each baseline at its config's weight and at larger ones, since none of them was tuned
#: for the tiny model.
METHODS: dict[str, ComparedMethod] = {
    "Sequential FT": ComparedMethod("continual/demo/ft"),
    "LDIFS lambda=300": ComparedMethod("continual/demo/ldifs"),
    "LDIFS lambda=300 (original)": ComparedMethod("continual/demo/ldifs", "original"),
    "LDIFS lambda=30": _weighted("continual/demo/ldifs", 30.0),
    "LDIFS lambda=3000": _weighted("continual/demo/ldifs", 3000.0),
    "L2SP alpha=0.01": ComparedMethod("continual/demo/l2sp"),
    "L2SP alpha=0.5": _weighted("continual/demo/l2sp", 0.5),
    "L2SP alpha=5": _weighted("continual/demo/l2sp", 5.0),
    "LFL lambda=1": ComparedMethod("continual/demo/lfl"),
    "LFL lambda=10": _weighted("continual/demo/lfl", 10.0),
    "LFL lambda=100": _weighted("continual/demo/lfl", 100.0),
    "LwF weight=1": ComparedMethod("continual/demo/lwf"),
    "LwF weight=10": _weighted("continual/demo/lwf", 10.0),
    "ZSCL weight=1": ComparedMethod("continual/demo/zscl"),
    "ZSCL weight=10": _weighted("continual/demo/zscl", 10.0),
}


def _folder_name(label: str) -> str:
    """The run folder of a label: ``"L2SP alpha=0.5"`` -> ``"l2sp-alpha-0.5"``."""
    kept = "".join(c if c.isalnum() or c == "." else "-" for c in label.lower())
    return "-".join(part for part in kept.split("-") if part)


def run_comparison(
    out: str | Path = "runs/continual-comparison",
    methods: Sequence[str] = tuple(METHODS),
    fit_args: Sequence[str] = (),
    epochs: int | None = None,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """Run ``methods`` (labels of :data:`METHODS`) on the embedded sequence; return the summary.

    ``fit_args`` are appended to every stage's ``ldifs fit``; ``epochs`` replaces the config's.

    Example:
        >>> summary = run_comparison("runs/c", methods=["Sequential FT", "LwF"])  # doctest: +SKIP
        >>> summary["runs"]["LwF"]["metrics"]["last"]  # doctest: +SKIP
    """
    from ldifs_lightning.continual.report import (
        format_continual_table,
        plot_foreign_deltas,
        write_metrics_csv,
    )
    from ldifs_lightning.continual.runner import run_continual

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    out = Path(out)
    config = yaml.safe_load((shipped_configs_dir() / "continual" / "demo.yaml").read_text())
    runs: dict[str, Any] = {}
    for label in methods:
        method = METHODS[label]
        result = run_continual(
            config["tasks"],
            method.config,
            reference=method.reference,
            epochs=epochs or config["epochs"],
            suite=config["suite"],
            max_train_samples=config["max_train_samples"],
            max_test_samples=config["max_test_samples"],
            out=out / _folder_name(label),
            seed=config["seed"],
            cache_dir=cache_dir,
            fit_args=[*method.fit_args, *fit_args],
            label=label,
        )
        # Fit and measurement time of the stages (resumed runs keep their stages' times).
        result["seconds"] = round(sum(stage["seconds"] for stage in result["stages"]), 1)
        runs[label] = result
    import torch

    summary = {
        "tasks": config["tasks"],
        "suite": config["suite"],
        "epochs": epochs or config["epochs"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    atomic_write_text(out / "comparison.json", json.dumps(summary, indent=2) + "\n")
    metrics = {label: run["metrics"] for label, run in runs.items()}
    write_metrics_csv(out / "metrics.csv", metrics)
    foreign = {label: [stage["foreign"] for stage in run["stages"]] for label, run in runs.items()}
    plot_foreign_deltas(out / "foreign.png", list(config["tasks"]), foreign)
    print(
        f"\nContinual fine-tuning on {' -> '.join(config['tasks'])} (foreign: "
        f"{', '.join(config['suite'])}):\n{format_continual_table(metrics)}\n\nWritten to {out}/"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of :func:`run_comparison`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/continual-comparison", help="run directory")
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="LABEL"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    run_comparison(args.out, args.methods)


if __name__ == "__main__":
    main()
