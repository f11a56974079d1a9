"""``make demo``: fine-tune the shipped tiny CLIP with plain FT and with LDIFS, compare forgetting.

    python -m ldifs_lightning.demo                    # FT, LDIFS and FT at a lower learning rate
    python -m ldifs_lightning.demo --methods ft ldifs --out runs/my-demo
    python -m ldifs_lightning.demo --sweep --out runs/sweep   # LDIFS lambdas, FT learning rates

Each method is one ``ldifs fit`` run of a config in ``configs/demo/`` (``ft.yaml``, ``ldifs.yaml``;
``ft-low-lr`` is ``ft.yaml`` with ``--model.init_args.lr`` lowered, ``ldifs-<lambda>`` is
``ldifs.yaml`` with another ``ldifs_weight``), with the same data, schedule, seed and forgetting
suite. The ConceptForgettingCallback measures the foreign domains after every
epoch; after training the task's test accuracy is measured. Everything lands under one run
directory: ``<out>/<method>/`` (the run's logs, ``forgetting.csv``, ``forgetting.png``),
``<out>/summary.json`` and ``<out>/comparison.png``; the comparison table is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "demo"


@dataclass(frozen=True)
class Method:
    """One demo run: a config in ``configs/demo`` plus extra CLI arguments."""

    label: str
    config: str
    extra: tuple[str, ...] = field(default_factory=tuple)


#: Lower learning rate of the ``ft-low-lr`` run (ft.yaml's is 1e-3).
LOW_LR = 1.0e-4
#: The lambda sweep's values besides ldifs.yaml's 300, and its intermediate FT learning rate.
SWEEP_LAMBDAS: tuple[float, ...] = (10.0, 100.0, 1000.0, 3000.0)
MID_LR = 3.0e-4


def _ldifs_at(weight: float) -> Method:
    return Method(
        f"LDIFS lambda={weight:g}", "ldifs.yaml", ("--model.init_args.ldifs_weight", str(weight))
    )


METHODS: dict[str, Method] = {
    "ft": Method("FT", "ft.yaml"),
    "ldifs": Method("LDIFS", "ldifs.yaml"),  # lambda 300 lives in the config
    "ft-low-lr": Method(f"FT lr={LOW_LR:g}", "ft.yaml", ("--model.init_args.lr", str(LOW_LR))),
    "ft-mid-lr": Method(f"FT lr={MID_LR:g}", "ft.yaml", ("--model.init_args.lr", str(MID_LR))),
    **{f"ldifs-{weight:g}": _ldifs_at(weight) for weight in SWEEP_LAMBDAS},
}
#: What ``make demo`` runs.
DEMO_METHODS: tuple[str, ...] = ("ft", "ldifs", "ft-low-lr")
#: What ``--sweep`` runs: FT (lambda 0), LDIFS at every lambda, FT at lower learning rates.
SWEEP_METHODS: tuple[str, ...] = (
    "ft",
    "ldifs-10",
    "ldifs-100",
    "ldifs",
    "ldifs-1000",
    "ldifs-3000",
    "ft-mid-lr",
    "ft-low-lr",
)


def _configs_dir(configs: str | Path | None) -> Path:
    folder = Path(configs) if configs else Path.cwd() / "configs" / "demo"
    if not (folder / "ft.yaml").is_file():
        folder = REPO_CONFIGS
    if not (folder / "ft.yaml").is_file():
        raise FileNotFoundError(
            f"configs/demo/ft.yaml not found in {Path.cwd()} or {REPO_CONFIGS}; run from the "
            "repository root or pass --configs DIR"
        )
    return folder


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (no home paths in JSON)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def logged_range(metrics_csv: Path, keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """Min, median and max over the logged steps of each of ``keys`` in a CSVLogger file (keys
    never logged are left out)."""
    with metrics_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ranges = {}
    for key in keys:
        values = [float(row[key]) for row in rows if row.get(key) not in (None, "")]
        if values:
            ranges[key] = {
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
            }
    return ranges


def run_method(
    name: str, out: Path, configs: Path, extra_args: Sequence[str] = ()
) -> dict[str, Any]:
    """Fit one method, test it on the task, return its summary row.

    The row records what the run did (task, lr, lambda, epochs, seed), what it measured (task
    accuracy and test-set size, mean and per-domain deltas, the pre-trained levels, the per-epoch
    history, the range of the logged per-batch cross-entropy and LDIFS distance) and where (torch
    version, torch threads, CPU count, seconds for fit + test).
    """
    import torch

    from ldifs_lightning.callbacks import ConceptForgettingCallback
    from ldifs_lightning.cli import build_cli
    from ldifs_lightning.evaluation.forgetting import forgetting_deltas

    method = METHODS[name]
    args = [
        "--config",
        str(configs / method.config),
        *method.extra,
        "--trainer.default_root_dir",
        str(out / name),
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(out / name),
        "--trainer.logger.name",
        "",
        "--trainer.logger.version",
        "",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        *extra_args,
    ]
    start = time.perf_counter()
    cli = build_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    seconds = time.perf_counter() - start
    cli.trainer.logger.save()
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, ConceptForgettingCallback))
    latest = forgetting_deltas(callback.baseline, callback.history[-1]["accuracies"])
    hp = cli.model.hparams
    return {
        "label": method.label,
        "config": _shown(configs / method.config),
        "task": cli.datamodule.hparams.dataset,
        "lr": hp.lr,
        "ldifs_weight": hp.ldifs_weight,
        "epochs": cli.trainer.current_epoch,
        "task_acc": 100.0 * float(tested[0]["test/acc"]),
        "task_test_images": len(cli.datamodule.test_set),
        "mean_delta_lp": latest.get("mean_delta_lp"),
        "mean_delta_zs": latest.get("mean_delta_zs"),
        "domains": {
            domain: {
                key: latest.get(f"{domain}/{key}")
                for key in ("delta_lp", "delta_zs", "lp_acc", "zs_acc")
            }
            for domain in callback.baseline
        },
        "pretrained": callback.baseline,
        "history": [
            {"epoch": e["epoch"], **forgetting_deltas(callback.baseline, e["accuracies"])}
            for e in callback.history
        ],
        "log_dir": str(cli.trainer.log_dir),
        # Per-batch training terms, to compare the LDIFS distance's scale with the loss's.
        "train_log": logged_range(
            Path(cli.trainer.log_dir) / "metrics.csv", ("train/ce", "train/ldifs")
        ),
        "seed": cli.config.get("seed_everything"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 1),
    }


def format_comparison(summary: dict[str, dict[str, Any]]) -> str:
    """The comparison table: task accuracy, mean and per-domain deltas (points), per method."""
    domains = list(next(iter(summary.values()))["domains"])
    header = ["method", "task acc", "mean dLP", "mean dZS"]
    header += [f"{d} dLP/dZS" for d in domains]
    lines = [header]
    for row in summary.values():
        cells = [
            row["label"],
            f"{row['task_acc']:.1f}",
            f"{row['mean_delta_lp']:+.1f}",
            f"{row['mean_delta_zs']:+.1f}",
        ]
        cells += [
            f"{row['domains'][d]['delta_lp']:+.1f} / {row['domains'][d]['delta_zs']:+.1f}"
            for d in domains
        ]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def plot_comparison(summary: dict[str, dict[str, Any]], path: Path) -> None:
    """Mean delta LP and ZS per epoch, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    for axis, key, title in zip(
        axes, ("mean_delta_lp", "mean_delta_zs"), ("LP", "ZS"), strict=True
    ):
        for row in summary.values():
            epochs = [0] + [entry["epoch"] + 1 for entry in row["history"]]
            values = [0.0] + [entry[key] for entry in row["history"]]
            axis.plot(epochs, values, marker="o", label=f"{row['label']} ({row['task_acc']:.1f}%)")
        axis.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        axis.set(xlabel="epoch", ylabel=f"mean delta {title} (points)", title=f"foreign {title}")
    axes[0].legend(title="method (task acc)", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(
    out: str | Path = "runs/demo",
    methods: Sequence[str] = DEMO_METHODS,
    configs: str | Path | None = None,
    extra_args: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Run the methods, write ``summary.json`` and ``comparison.png`` under ``out``, print the
    table, and return the summary (per method: ``task_acc``, ``mean_delta_lp``,
    ``mean_delta_zs``, per-domain deltas, ...)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown demo method(s) {unknown}; choose from {list(METHODS)}")
    out = Path(out)
    folder = _configs_dir(configs)
    summary = {name: run_method(name, out, folder, extra_args) for name in methods}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_comparison(summary, out / "comparison.png")
    task = next(iter(summary.values()))["task"]
    print(
        f"\nConcept forgetting after fine-tuning on {task!r} (deltas in points on the foreign "
        f"domains, vs the pre-trained model):\n{format_comparison(summary)}\n\n"
        f"Written to {out}/: summary.json, comparison.png, and per method "
        "<method>/{forgetting.csv,forgetting.png,metrics.csv,config.yaml}"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FT vs LDIFS concept forgetting on the demo CLIP")
    parser.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--methods", nargs="+", default=list(DEMO_METHODS), choices=list(METHODS))
    which.add_argument(
        "--sweep",
        action="store_true",
        help=f"run the lambda sweep instead: {' '.join(SWEEP_METHODS)}",
    )
    parser.add_argument("--configs", default=None, help="folder with ft.yaml and ldifs.yaml")
    # One thread: these models and batches are too small to gain from more, and on a shared
    # 2-core machine one thread ran a training step about 3x faster than two.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args, extra = parser.parse_known_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_demo(args.out, SWEEP_METHODS if args.sweep else args.methods, args.configs, extra)


if __name__ == "__main__":
    main()
