"""``ldifs compare``: every fine-tuning method on the embedded domains, measured side by side.

    ldifs compare --quick                 # one task, one seed, one value per knob (~5 min)
    ldifs compare                         # the full grid: 4 tasks x 3 seeds, knobs at 2-3 values
    ldifs compare --methods [ft,ldifs] --values '{ldifs: [10, 100, 1000]}' --seeds 2

Each run fine-tunes the shipped tiny CLIP with one method (a config in ``configs/compare/``) on
one embedded domain, the other three being the forgetting suite, and records the task's test and
validation accuracy and the suite's mean delta LP / delta ZS (and ECE deltas) after the last
epoch. ZS and LP leave the encoder as it is, so their deltas are 0 by construction (not
measured); WiSE-FT interpolates the FT run at FT's config learning rate. Everything lands in
``<out>/``: ``results.json`` (every run and the summary), ``table.md``, ``frontier.png`` (task
accuracy against mean delta LP / ZS, averaged over tasks) and ``frontier-<task>.png``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.callbacks.forgetting import DEFAULT_CACHE_DIR
from ldifs_lightning.compare.grid import (
    METHODS,
    QUICK_TASK,
    TASKS,
    WISE_FT_BASE_LR,
    Run,
    check_grid,
)

#: Metrics every trained run records (accuracies and deltas in points).
DELTA_KEYS = ("mean_delta_lp", "mean_delta_zs", "mean_delta_lp_ece", "mean_delta_zs_ece")


def _suite(task: str) -> list[str]:
    return [domain for domain in TASKS if domain != task]


def _fit_args(
    run: Run, config: str, out: Path, epochs: int | None, cache_dir: str | None
) -> list[str]:
    method = METHODS[run.method]
    args = [
        "--config", config,
        "--data.init_args.dataset", run.task,
        "--data.init_args.shuffle_seed", str(run.seed),
        "--seed_everything", str(run.seed),
        "--trainer.callbacks.init_args.suite", "[" + ",".join(_suite(run.task)) + "]",
        "--trainer.default_root_dir", str(out),
        "--trainer.logger", "false",
        "--trainer.callbacks.init_args.cache_dir", "null" if cache_dir is None else cache_dir,
    ]  # fmt: skip
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
        args += ["--trainer.callbacks.init_args.every_n_epochs", str(epochs)]
    if method.argument is not None and run.value is not None and method.config == config:
        args += [method.argument, repr(run.value)]
    return args


def _row(run: Run, **measured: Any) -> dict[str, Any]:
    method = METHODS[run.method]
    knob = "" if run.value is None else f" {method.knob}={run.value:g}"
    print(
        f"compare: {run.task} seed {run.seed} {method.label}{knob}: task acc "
        f"{measured['task_acc']:.1f}, dLP {measured.get('mean_delta_lp', 0.0):+.1f}, dZS "
        f"{measured.get('mean_delta_zs', 0.0):+.1f} ({measured['seconds']:.0f} s)",
        flush=True,
    )
    return {
        "task": run.task,
        "seed": run.seed,
        "method": run.method,
        "label": method.label,
        "knob": method.knob,
        "value": run.value,
        **measured,
    }


def _accuracy(trainer: Any, module: Any, data: Any, stage: str) -> float:
    run = trainer.validate if stage == "val" else trainer.test
    result = run(module, datamodule=data, verbose=False)
    return 100.0 * float(result[0][f"{stage}/acc"])


@contextlib.contextmanager
def _lightning_info_silenced() -> Iterator[None]:
    """Hide Lightning's INFO lines (accelerator banners, each run's forgetting table) while a run
    is built and fitted: the comparison prints one progress line per run instead. Warnings and
    errors still show; every run's forgetting.csv is written as usual."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Fitted:
    """A run's fitted module, Trainer, data and forgetting callback."""

    def __init__(
        self, run: Run, config: str, out: Path, epochs: int | None, cache_dir: str | None, fit: bool
    ) -> None:
        from ldifs_lightning.callbacks import ConceptForgettingCallback
        from ldifs_lightning.cli import build_cli
        from ldifs_lightning.cli_errors import running

        start = time.perf_counter()
        with _lightning_info_silenced():
            cli = build_cli(_fit_args(run, config, out, epochs, cache_dir), run=False)
        self.module, self.trainer, self.data = cli.model, cli.trainer, cli.datamodule
        with running(), _lightning_info_silenced():
            if fit:
                self.trainer.fit(self.module, datamodule=self.data)
            self.val_acc = _accuracy(self.trainer, self.module, self.data, "val")
            self.test_acc = _accuracy(self.trainer, self.module, self.data, "test")
        callbacks = getattr(self.trainer, "callbacks", [])
        self.forgetting = next(c for c in callbacks if isinstance(c, ConceptForgettingCallback))
        self.seconds = time.perf_counter() - start

    def deltas(self) -> dict[str, float]:
        """The suite's mean deltas after the last epoch (the callback's last measurement)."""
        from ldifs_lightning.evaluation.forgetting import forgetting_deltas

        if not self.forgetting.history:
            raise RuntimeError("the forgetting callback measured nothing: is every_n_epochs set?")
        latest = forgetting_deltas(
            self.forgetting.baseline, self.forgetting.history[-1]["accuracies"]
        )
        return {key: float(latest[key]) for key in DELTA_KEYS if key in latest}


def _unchanged_encoder(
    run: Run, out: Path, epochs: int | None, cache_dir: str | None
) -> dict[str, Any]:
    """ZS (the zero-shot head) and LP (the probe): the encoder is the pre-trained one."""
    config = "compare/lp" if run.method == "lp" else "compare/ft"
    fitted = _Fitted(run, config, out, epochs, cache_dir, fit=run.method == "lp")
    zeros = {key: 0.0 for key in DELTA_KEYS}
    return _row(
        run, task_acc=fitted.test_acc, val_acc=fitted.val_acc, seconds=fitted.seconds, **zeros
    )


def _wise_rows(fitted: _Fitted, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """WiSE-FT at each alpha of ``runs``, from the FT run ``fitted``."""
    from ldifs_lightning.callbacks.wise_ft import pretrained_parts
    from ldifs_lightning.evaluation.classification import classification_accuracy
    from ldifs_lightning.models.wise import wise_ft

    module, data = fitted.module, fitted.data
    device = module.device
    pretrained_encoder, pretrained_head = pretrained_parts(module)
    rows = []
    for run in runs:
        start = time.perf_counter()
        assert run.value is not None
        encoder = wise_ft(pretrained_encoder, module.image_encoder, run.value)
        head = wise_ft(pretrained_head, module.head, run.value)
        val = classification_accuracy(encoder, head, data.val_dataloader(), device)
        test = classification_accuracy(encoder, head, data.test_dataloader(), device)
        deltas = fitted.forgetting.measure(encoder, device)
        measured = {key: float(deltas[key]) for key in DELTA_KEYS if key in deltas}
        seconds = time.perf_counter() - start
        rows.append(_row(run, task_acc=test, val_acc=val, seconds=seconds, **measured))
    return rows


def _cells(runs: Sequence[Run]) -> list[list[Run]]:
    """``runs`` grouped by (task, seed), in order: a cell's WiSE-FT reuses its FT run."""
    keys = dict.fromkeys((r.task, r.seed) for r in runs)
    return [[r for r in runs if (r.task, r.seed) == key] for key in keys]


def _run_cells(
    cells: Sequence[Sequence[Run]],
    out: Path,
    epochs: int | None,
    cache_dir: str | None,
    threads: int = 0,
) -> list[dict[str, Any]]:
    if threads:  # in a worker process
        torch.set_num_threads(threads)
    return run_grid([run for cell in cells for run in cell], out, epochs, cache_dir)


def run_grid(
    runs: Sequence[Run],
    out: Path,
    epochs: int | None = None,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
) -> list[dict[str, Any]]:
    """Make every run of ``runs`` (see :func:`~ldifs_lightning.compare.grid.check_grid`)."""
    rows: list[dict[str, Any]] = []
    scratch = out / "fits"
    for task_seed in dict.fromkeys((r.task, r.seed) for r in runs):
        cell = [r for r in runs if (r.task, r.seed) == task_seed]
        wise = [r for r in cell if r.method == "wiseft"]
        base_ft: _Fitted | None = None
        for run in cell:
            if run.method == "wiseft":
                continue
            if run.method in ("zs", "lp"):
                rows.append(_unchanged_encoder(run, scratch, epochs, cache_dir))
                continue
            config = METHODS[run.method].config
            assert config is not None
            fitted = _Fitted(run, config, scratch, epochs, cache_dir, fit=True)
            rows.append(
                _row(
                    run, task_acc=fitted.test_acc, val_acc=fitted.val_acc,
                    seconds=fitted.seconds, **fitted.deltas(),
                )
            )  # fmt: skip
            if run.method == "ft" and run.value == WISE_FT_BASE_LR:
                base_ft = fitted
        if wise:
            if base_ft is None:  # WiSE-FT without FT at its learning rate in the grid
                task, seed = task_seed
                base_ft = _Fitted(Run(task, seed, "ft", WISE_FT_BASE_LR), "compare/ft",
                                  scratch, epochs, cache_dir, fit=True)  # fmt: skip
            rows += _wise_rows(base_ft, wise)
    return rows


def run_compare(
    methods: Sequence[str] = tuple(METHODS),
    tasks: Sequence[str] = TASKS,
    seeds: int = 3,
    values: Mapping[str, Sequence[float]] | None = None,
    quick: bool = False,
    epochs: int | None = None,
    out: str | Path = "runs/compare",
    workers: int = 1,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """Run the comparison grid and write its reports; return what ``results.json`` holds.

    ``workers`` > 1 runs whole (task, seed) cells in that many processes (one per core).

    Example:
        >>> results = run_compare(quick=True, out="runs/compare-quick")  # doctest: +SKIP
        >>> results["summary"]["selected"]["ldifs"]["task_acc"]  # doctest: +SKIP
    """
    from ldifs_lightning.compare.report import write_reports
    from ldifs_lightning.compare.summary import summarize

    if quick:
        tasks, seeds = ((QUICK_TASK,) if tuple(tasks) == TASKS else tuple(tasks)), 1
    runs = check_grid(methods, tasks, seeds, values, quick)
    out = Path(out)
    start = time.perf_counter()
    if workers <= 1:
        rows = run_grid(runs, out, epochs, cache_dir)
    else:  # whole (task, seed) cells per process; rows back in the grid's order
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        cells = _cells(runs)
        shares = [cells[index::workers] for index in range(workers)]
        context = multiprocessing.get_context("spawn")
        threads = torch.get_num_threads()
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            parts = list(pool.map(_run_cells, shares, [out] * workers, [epochs] * workers,
                                  [cache_dir] * workers, [threads] * workers))  # fmt: skip
        order = {(r.task, r.seed, r.method, r.value): i for i, r in enumerate(runs)}
        rows = sorted(
            (row for part in parts for row in part),
            key=lambda row: order[(row["task"], row["seed"], row["method"], row["value"])],
        )
    results = {
        "setting": {
            "methods": list(methods),
            "tasks": list(tasks),
            "seeds": seeds,
            "quick": quick,
            "epochs": epochs,
            "workers": workers,
            "knobs": {
                name: {"knob": METHODS[name].knob, "values": sorted({r.value for r in runs
                       if r.method == name and r.value is not None})}
                for name in methods if METHODS[name].knob
            },
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "seconds": round(time.perf_counter() - start, 1),
        },
        "runs": rows,
        "summary": summarize(rows),
    }  # fmt: skip
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_reports(out, results)
    return results


def compare(
    methods: list[str] | None = None,
    tasks: list[str] | None = None,
    seeds: int = 3,
    values: dict[str, list[float]] | None = None,
    quick: bool = False,
    epochs: int | None = None,
    out: Path = Path("runs/compare"),
    threads: int = 1,
    workers: int = 1,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """Every method on the embedded domains: accuracy-forgetting frontiers, seeds, a table.

    Args:
        methods: Methods to run (default all): zs, lp, ft, lpft, ls, l2sp, flyp, flyp_ce, wiseft,
            ldifs.
        tasks: Embedded domains used as the task (default all four); the others are the suite.
        seeds: Seeds 0..seeds-1 per task (model init and data order).
        values: Knob values replacing a method's grid, e.g. ``{ldifs: [10, 100]}`` (knobs: ft lr,
            ls epsilon, l2sp alpha, wiseft alpha, ldifs lambda).
        quick: One task (textures), one seed, one value per knob (its config's).
        epochs: Training epochs per run (default: configs/compare/base.yaml's).
        out: Run directory: results.json, table.md, frontier plots.
        threads: torch CPU threads per process; 0 keeps torch's default.
        workers: Processes running (task, seed) cells in parallel (e.g. one per core).
        cache_dir: Cache of the pre-trained model's suite features; null disables it.
    """
    if threads < 0:
        raise ValueError(f"threads={threads} must be >= 0 (0 keeps torch's default)")
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs={epochs} must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(threads)
    return run_compare(
        methods or tuple(METHODS), tasks or TASKS, seeds, values, quick, epochs, out, workers,
        cache_dir,
    )  # fmt: skip
