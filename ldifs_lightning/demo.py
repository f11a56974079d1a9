"""``ldifs demo``: fine-tune the shipped tiny CLIP with plain FT and with LDIFS, compare forgetting.

    ldifs demo                                  # FT, LDIFS and FT at a lower learning rate
    ldifs demo --methods [ft,ldifs] --out runs/my-demo
    ldifs demo --sweep --out runs/sweep         # LDIFS lambdas, FT learning rates
    ldifs demo --fit_args [--trainer.max_epochs=3]   # appended to every run's ``ldifs fit``

Each method is one ``ldifs fit`` run of a shipped config in ``configs/demo/`` (``ft.yaml``,
``ldifs.yaml``; ``ft-low-lr`` is ``ft.yaml`` with ``--model.init_args.lr`` lowered,
``ldifs-<lambda>`` is ``ldifs.yaml`` with another ``ldifs_weight``), with the same data, schedule,
seed and forgetting suite. The ConceptForgettingCallback measures the foreign domains after every
epoch; after training the task's test accuracy is measured. Everything lands under one run
directory: ``<out>/<method>/`` (the run's logs, ``forgetting.csv``, ``forgetting.png``),
``<out>/summary.json`` and ``<out>/comparison.png``; the comparison table is printed.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.config_files import shipped_configs_dir
from ldifs_lightning.reporting.console import format_comparison
from ldifs_lightning.reporting.plots import plot_comparison


@dataclass(frozen=True)
class Method:
    """One demo run: a config in ``configs/demo`` plus extra CLI arguments.

    Example:
        >>> Method("FT", "ft.yaml").config
        'ft.yaml'
    """

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


#: A run ``ldifs demo --methods`` accepts (the keys of ``METHODS``).
DemoMethod = Literal[
    "ft", "ldifs", "ft-low-lr", "ft-mid-lr", "ldifs-10", "ldifs-100", "ldifs-1000", "ldifs-3000"
]  # fmt: skip


def _configs_dir(configs: str | Path | None) -> Path:
    """``configs`` (a folder with ``ft.yaml`` and ``ldifs.yaml``), or the shipped ``demo/``."""
    folder = Path(configs) if configs else shipped_configs_dir() / "demo"
    missing = [name for name in ("ft.yaml", "ldifs.yaml") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"configs={str(folder)!r} lacks {', '.join(missing)}: pass a folder holding the "
            "demo's ft.yaml and ldifs.yaml, or leave it unset for the shipped configs/demo"
        )
    return folder


def _shown(path: Path) -> str:
    """``path`` as the repository names it when shipped (``configs/demo/ft.yaml``), else relative
    to the working directory when it is under it (no home paths in JSON)."""
    try:
        return "configs/" + path.resolve().relative_to(shipped_configs_dir().resolve()).as_posix()
    except ValueError:
        pass
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
    from ldifs_lightning.cli_errors import running
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
    with running():
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    seconds = time.perf_counter() - start
    if cli.trainer.logger is not None:
        cli.trainer.logger.save()
    callbacks = getattr(cli.trainer, "callbacks", [])
    callback = next(c for c in callbacks if isinstance(c, ConceptForgettingCallback))
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
            Path(str(cli.trainer.log_dir)) / "metrics.csv", ("train/ce", "train/ldifs")
        ),
        "seed": cli.config.get("seed_everything"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 1),
    }


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
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_comparison(summary, out / "comparison.png")
    task = next(iter(summary.values()))["task"]
    print(
        f"\nConcept forgetting after fine-tuning on {task!r} (deltas in points on the foreign "
        f"domains, vs the pre-trained model):\n{format_comparison(summary)}\n\n"
        f"Written to {out}/: summary.json, comparison.png, and per method "
        "<method>/{forgetting.csv,forgetting.png,metrics.csv,config.yaml}"
    )
    return summary


def demo(
    methods: list[DemoMethod] | DemoMethod | None = None,
    sweep: bool = False,
    out: Path = Path("runs/demo"),
    configs: Path | None = None,
    threads: int = 1,
    fit_args: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """FT vs LDIFS concept forgetting on the shipped tiny CLIP (what ``make demo`` runs).

    Args:
        methods: One run or a list of runs to compare, e.g. ``[ft,ldifs]``; default
            ``[ft,ldifs,ft-low-lr]``.
        sweep: Run the lambda sweep instead: ft, ldifs-10, ldifs-100, ldifs (300), ldifs-1000,
            ldifs-3000, ft-mid-lr, ft-low-lr.
        out: Run directory: summary.json, comparison.png and one folder per run.
        configs: Folder holding the demo's ft.yaml and ldifs.yaml; default the shipped
            configs/demo.
        threads: torch CPU threads; 0 keeps torch's default. One is the fastest for these tiny
            models on a shared 2-core machine (a step ran about 3x faster than with two).
        fit_args: Arguments appended to every run's ``ldifs fit``, e.g.
            ``[--trainer.max_epochs=3]``.

    Example:
        >>> demo(methods=["ft", "ldifs"], out=Path("runs/my-demo"))  # doctest: +SKIP
    """
    if sweep and methods:
        raise ValueError("demo: pass --methods or --sweep, not both")
    if threads < 0:
        raise ValueError(f"demo: threads={threads} must be >= 0 (0 keeps torch's default)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if isinstance(methods, str):
        methods = [methods]
    chosen = SWEEP_METHODS if sweep else tuple(methods or DEMO_METHODS)
    return run_demo(out, chosen, configs, fit_args or ())
