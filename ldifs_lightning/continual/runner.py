"""``ldifs continual``: fine-tune one model on a sequence of tasks and measure what it keeps.

    ldifs continual --config continual/demo                      # the embedded sequence, LDIFS
    ldifs continual --config continual/demo --method continual/demo/lwf --out runs/c-lwf
    ldifs continual --config continual/svhn_cifar10_resisc45     # ViT-B/32, the reference's

Stage i is an ordinary ``ldifs fit`` of the method's config(s) on ``tasks[i]``: a fresh module
(a fresh head for the task), whose image encoder is then loaded with stage i-1's final encoder;
every regulariser is told the stage's reference encoder, the previous encoder and the earlier
heads (:meth:`~ldifs_lightning.regularizers.Regularizer.start_task`) before the fit. After each
stage the run measures the accuracy matrix's row (every task's test accuracy with its own head;
tasks not learned yet with the pre-trained zero-shot head) and the foreign suite's deltas.

Run directory::

    <out>/continual.json              the run's options and its resolved stage config (resume check)
    <out>/stage-<i>-<task>/           config.yaml, metrics.csv, checkpoints/last.ckpt,
                                      encoder.pt, head.pt, result.json (written last: stage done)
    <out>/results.json, matrix.csv, metrics.csv, matrix.png, foreign.png

Started again with the same command, a run skips the stages that have ``result.json`` and
resumes a killed stage from its ``last.ckpt``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ldifs_lightning.atomic import atomic_write, atomic_write_text
from ldifs_lightning.callbacks.forgetting import DEFAULT_CACHE_DIR
from ldifs_lightning.continual.reference import (
    PRETRAINED,
    choose_best_previous,
    validation_accuracy,
)
from ldifs_lightning.continual.sequence import (
    REFERENCE_CHOICES,
    ContinualSpec,
    ReferenceChoice,
    StageHeadInit,
    check_tasks,
    first_difference,
    stage_arguments,
    stage_epochs,
    stage_folder,
)
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.distributed import barrier, is_rank_zero
from ldifs_lightning.evaluation.classification import classification_accuracy
from ldifs_lightning.regularizers import TaskContext, build_regularizer

RUN_FILE = "continual.json"
RESULT_FILE = "result.json"


def _parse_stage(args: list[str]) -> dict[str, Any]:
    from ldifs_lightning.cli import parse_fit_config

    return parse_fit_config(args)


def _data_module(stage_config: dict[str, Any], task: str) -> FineTuneDataModule:
    init_args = dict(stage_config["data"].get("init_args") or {})
    init_args["dataset"] = task
    return FineTuneDataModule(**init_args)


def _check_method(stage_config: dict[str, Any]) -> None:
    """The stage config must train a fine-tuner on a FineTuneDataModule; its regularisers must
    build (their own checks, e.g. ZSCL's reference data, run now)."""
    data_class = str(stage_config["data"].get("class_path", ""))
    if not data_class.endswith("FineTuneDataModule"):
        raise ValueError(
            f"a continual run sets each stage's dataset through FineTuneDataModule, but the method "
            f"config's data is {data_class!r}; use ldifs_lightning.data.FineTuneDataModule"
        )
    model_args = stage_config["model"].get("init_args") or {}
    if model_args.get("freeze_encoder"):
        raise ValueError(
            "the method freezes the encoder (freeze_encoder: true): nothing carries over from one "
            "stage to the next; choose a method that trains the encoder"
        )
    for spec in model_args.get("regularizers") or []:
        build_regularizer(spec)


def _check_resume(out: Path, saved_for_resume: dict[str, Any]) -> None:
    path = out / RUN_FILE
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    key = first_difference(saved, saved_for_resume)
    if key is not None:
        raise ValueError(
            f"out={str(out)!r} holds a continual run with another config (key {key!r} differs); "
            "run the same command to resume it, or pass another --out"
        )


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in tensors.items()}, buffer)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return cast(dict[str, torch.Tensor], torch.load(path, map_location="cpu", weights_only=True))


def _head(weights: dict[str, torch.Tensor]) -> nn.Linear:
    head = nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
    head.load_state_dict(weights)
    return head


class _Run:
    """One continual run: its spec, folders, data and the pre-trained text tower's heads."""

    def __init__(
        self,
        spec: ContinualSpec,
        out: Path,
        stage_config: dict[str, Any],
        datamodules: list[FineTuneDataModule],
        cache_dir: str | None,
    ) -> None:
        self.spec, self.out, self.stage_config = spec, out, stage_config
        self.datamodules = datamodules
        self.cache_dir = cache_dir
        model_args = stage_config["model"]["init_args"]
        self.model_name = str(model_args["model_name"])
        self.pretrained = model_args.get("pretrained")
        self.folders = [stage_folder(out, i, task) for i, task in enumerate(spec.tasks)]
        #: Where the last stage ran (its Trainer's root device); the final measurements use it.
        self.device: torch.device | None = None
        self._zero_shot_heads: list[nn.Linear] | None = None
        self._pretrained_encoder: nn.Module | None = None
        self._forgetting: Any = None

    # ------------------------------------------------------------------ pre-trained model
    def _load_pretrained(self) -> None:
        from ldifs_lightning.models import build_zero_shot_head, create_clip, get_tokenizer
        from ldifs_lightning.models.factory import image_encoder_of, uses_quick_gelu

        quick_gelu = uses_quick_gelu(self.model_name, self.pretrained)
        clip = create_clip(self.model_name, self.pretrained, quick_gelu)
        tokenizer = get_tokenizer(self.model_name)
        self._zero_shot_heads = [
            build_zero_shot_head(clip, tokenizer, data.classnames, data.templates)
            for data in self.datamodules
        ]
        self._pretrained_encoder = image_encoder_of(clip).eval()

    @property
    def zero_shot_heads(self) -> list[nn.Linear]:
        """Per task, the pre-trained text tower's zero-shot head."""
        if self._zero_shot_heads is None:
            self._load_pretrained()
        assert self._zero_shot_heads is not None
        return self._zero_shot_heads

    @property
    def pretrained_encoder(self) -> nn.Module:
        if self._pretrained_encoder is None:
            self._load_pretrained()
        assert self._pretrained_encoder is not None
        return self._pretrained_encoder

    # ------------------------------------------------------------------ measurements
    def accuracy_row(self, stage: int, encoder: nn.Module, device: torch.device) -> list[float]:
        """Test accuracy on every task after ``stage``: learned tasks with their own heads, the
        others with the pre-trained zero-shot head."""
        row = []
        for task_index, data in enumerate(self.datamodules):
            if task_index <= stage:
                head = _head(_load_tensors(self.folders[task_index] / "head.pt"))
            else:
                head = self.zero_shot_heads[task_index]
            row.append(
                classification_accuracy(
                    encoder.to(device), head.to(device), data.test_dataloader(), device
                )
            )
        return row

    def foreign(self, encoder: nn.Module, device: torch.device) -> dict[str, float] | None:
        """The foreign suite's accuracies and deltas (None without a suite)."""
        if not self.spec.suite:
            return None
        if self._forgetting is None:
            from ldifs_lightning.callbacks import ConceptForgettingCallback

            data_args = self.stage_config["data"]["init_args"]
            self._forgetting = ConceptForgettingCallback(
                list(self.spec.suite),
                root=str(data_args.get("root", "data")),
                max_train_samples=self.spec.max_train_samples,
                max_test_samples=self.spec.max_test_samples,
                cache_dir=self.cache_dir,
                model_name=self.model_name,
                pretrained=self.pretrained,
                image_size=data_args.get("image_size"),
                seed=self.spec.seed,
                verify_checksums=bool(data_args.get("verify_checksums", True)),
            )
        return cast(dict[str, float], self._forgetting.evaluate(encoder, device=device))

    # ------------------------------------------------------------------ references
    def encoder_of(self, stage: int, like: nn.Module) -> nn.Module:
        """A copy of ``like`` holding stage ``stage``'s final encoder."""
        encoder = copy.deepcopy(like)
        encoder.load_state_dict(_load_tensors(self.folders[stage] / "encoder.pt"))
        return encoder.eval()

    def reference(
        self, stage: int, module: Any, previous: nn.Module, device: torch.device
    ) -> tuple[nn.Module | None, dict[str, Any]]:
        """The stage's reference encoder (None: the pre-trained one) and how it was chosen."""
        choice = self.spec.reference
        if choice == "previous":
            return previous, {"choice": choice, "encoder": f"stage-{stage - 1}"}
        if choice == "original":
            return None, {"choice": choice, "encoder": PRETRAINED}
        path = self.folders[stage] / "reference.json"
        if path.is_file():  # a resumed stage keeps the choice it made
            record = json.loads(path.read_text())
        else:
            record = self._best_previous(stage, module, device)  # on every rank (collectives)
            if is_rank_zero():
                atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        chosen = record["encoder"]
        if chosen == PRETRAINED:
            return None, record
        return self.encoder_of(int(chosen.split("-")[1]), module.image_encoder), record

    def _best_previous(self, stage: int, module: Any, device: torch.device) -> dict[str, Any]:
        data = self.datamodules[stage]
        head_init = self.spec.head_init or module.head_init
        if head_init == "random":
            head_init = "zeroshot"
        candidates = {PRETRAINED: self.pretrained_encoder}
        for earlier in range(stage):
            candidates[f"stage-{earlier}"] = self.encoder_of(earlier, module.image_encoder)
        table = {
            name: validation_accuracy(
                encoder,
                head_init,
                zero_shot_head=self.zero_shot_heads[stage],
                fit_loader=data.fit_eval_dataloader(),
                val_loader=data.val_dataloader(),
                device=device,
                seed=self.spec.seed,
            )
            for name, encoder in candidates.items()
        }
        return {
            "choice": "best_previous",
            "encoder": choose_best_previous(table),
            "head": head_init,
            "validation_accuracy": table,
        }

    # ------------------------------------------------------------------ one stage
    def run_stage(self, stage: int) -> dict[str, Any]:
        from ldifs_lightning.cli import build_cli
        from ldifs_lightning.cli_errors import running

        folder = self.folders[stage]
        start = time.perf_counter()
        cli = build_cli(stage_arguments(self.spec, stage, folder), run=False)
        module, trainer = cli.model, cli.trainer
        device = self.device = trainer.strategy.root_device
        reference_record: dict[str, Any] = {"choice": self.spec.reference, "encoder": PRETRAINED}
        if stage > 0:
            previous = self.encoder_of(stage - 1, module.image_encoder)
            module.image_encoder.load_state_dict(previous.state_dict())
            reference, reference_record = self.reference(stage, module, previous, device)
            heads = [_load_tensors(self.folders[earlier] / "head.pt") for earlier in range(stage)]
            context = TaskContext(
                stage=stage,
                reference=reference,
                previous=previous,
                previous_heads=[(h["weight"], h["bias"]) for h in heads],
            )
            for term in module.terms:
                term.start_task(context)
        last = folder / "checkpoints" / "last.ckpt"
        resume = last if last.is_file() else None
        logged = folder / "metrics.csv"
        if resume is not None and logged.is_file() and is_rank_zero():
            # Lightning's CSVLogger starts a fresh metrics.csv in a folder it finds in use.
            logged.replace(folder / f"metrics.before-resume-{time.strftime('%Y%m%d-%H%M%S')}.csv")
        with running(), warnings.catch_warnings():
            # The stage's own folders: reference.json or a killed attempt's files are expected.
            for what in ("Checkpoint directory", "Experiment logs directory"):
                warnings.filterwarnings("ignore", f"{what} .* exists and is not empty")
            trainer.fit(module, datamodule=cli.datamodule, ckpt_path=resume)
        if trainer.logger is not None:
            trainer.logger.save()
        encoder = module.image_encoder
        if is_rank_zero():
            _save_tensors(folder / "encoder.pt", dict(encoder.state_dict()))
            _save_tensors(folder / "head.pt", dict(module.head.state_dict()))
        barrier()  # every rank reads them below and in the next stage
        with running():
            row = self.accuracy_row(stage, encoder, device)
            foreign = self.foreign(encoder, device)
        result = {
            "stage": stage,
            "task": self.spec.tasks[stage],
            "epochs": self.spec.epochs[stage],
            "row": row,
            "foreign": foreign,
            "reference": reference_record,
            "seconds": round(time.perf_counter() - start, 1),
        }
        if is_rank_zero():
            atomic_write_text(folder / RESULT_FILE, json.dumps(result, indent=2) + "\n")
        barrier()
        return result


def run_continual(
    tasks: Sequence[str],
    method: Sequence[str] | str,
    *,
    reference: ReferenceChoice = "previous",
    head_init: StageHeadInit | None = None,
    epochs: int | Sequence[int] | None = None,
    suite: Sequence[str] | None = None,
    max_train_samples: int | None = 2000,
    max_test_samples: int | None = 1000,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
    out: str | Path = "runs/continual",
    seed: int = 0,
    fit_args: Sequence[str] = (),
    label: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) a continual sequence; return what ``results.json`` holds.

    The Python entry point of ``ldifs continual`` (same arguments; see :func:`continual`);
    ``label`` names the run in its table and plots (default: the method configs' names).

    Example:
        >>> results = run_continual(
        ...     ["digits", "fashion", "textures"], "continual/demo/ldifs", suite=["shapes"],
        ...     out="runs/my-sequence",
        ... )  # doctest: +SKIP
        >>> results["metrics"]["last"]  # doctest: +SKIP
    """
    spec, run = _prepare(
        tasks, method, reference, head_init, epochs, suite, max_train_samples,
        max_test_samples, cache_dir, Path(out), seed, fit_args,
    )  # fmt: skip
    results = []
    for stage in range(len(spec.tasks)):
        done = run.folders[stage] / RESULT_FILE
        if done.is_file():
            results.append(json.loads(done.read_text()))
            continue
        results.append(run.run_stage(stage))
    from ldifs_lightning.continual.metrics import continual_metrics

    matrix = [r["row"] for r in results]
    foreign = [r["foreign"] for r in results] if spec.suite else None
    default = "cuda" if torch.cuda.is_available() else "cpu"
    device = run.device or torch.device(default)  # all stages done before: no Trainer ran
    encoder = run.pretrained_encoder.to(device)
    pretrained_row = [
        classification_accuracy(encoder, head.to(device), data.test_dataloader(), device)
        for head, data in zip(run.zero_shot_heads, run.datamodules, strict=True)
    ]
    summary = {
        "spec": spec.as_json(),
        "matrix": matrix,
        "pretrained_zero_shot": pretrained_row,
        "metrics": continual_metrics(matrix, foreign),
        "stages": results,
    }
    if is_rank_zero():
        _write_reports(Path(out), spec, summary, label)
    return summary


def _prepare(
    tasks: Sequence[str],
    method: Sequence[str] | str,
    reference: str,
    head_init: str | None,
    epochs: int | Sequence[int] | None,
    suite: Sequence[str] | None,
    max_train_samples: int | None,
    max_test_samples: int | None,
    cache_dir: str | None,
    out: Path,
    seed: int,
    fit_args: Sequence[str],
) -> tuple[ContinualSpec, _Run]:
    """Check everything, before anything is written; then record the run in ``continual.json``."""
    from ldifs_lightning.data import get_dataset_info

    checked = check_tasks(tasks)
    if reference not in REFERENCE_CHOICES:
        raise ValueError(f"reference={reference!r} is not one of {list(REFERENCE_CHOICES)}")
    if head_init not in (None, "zeroshot", "linear_probe"):
        raise ValueError(f"head_init={head_init!r} is not one of ['zeroshot', 'linear_probe']")
    methods = (method,) if isinstance(method, str) else tuple(method)
    if not methods:
        raise ValueError("method is empty: name the ldifs fit config(s) every stage runs")
    for member in suite or ():
        get_dataset_info(member)
    overlap = sorted(set(suite or ()) & set(checked))
    if overlap:
        raise ValueError(
            f"{overlap} are both tasks and foreign suite members: the suite measures datasets "
            "the sequence never trains on"
        )
    draft = ContinualSpec(
        checked, methods, reference, head_init, (1,) * len(checked), tuple(fit_args),
        tuple(suite or ()), max_train_samples, max_test_samples, seed,
    )  # fmt: skip
    stage_config = _parse_stage(stage_arguments(draft, 0, stage_folder(out, 0, checked[0])))
    _check_method(stage_config)
    method_epochs = stage_config["trainer"].get("max_epochs")
    spec = dataclasses.replace(draft, epochs=stage_epochs(checked, epochs, method_epochs))
    stage_config = _parse_stage(stage_arguments(spec, 0, stage_folder(out, 0, checked[0])))
    datamodules = [_data_module(stage_config, task) for task in checked]
    for task, data in zip(checked, datamodules, strict=True):
        data.setup("fit")
        data.setup("test")
        if reference == "best_previous" and not len(cast(Any, data.val_set)):
            raise ValueError(
                f"reference=best_previous picks by validation accuracy, but task {task!r} has no "
                "validation split; raise data val_fraction / max_val_samples or use previous"
            )
    record = {"spec": spec.as_json(), "stage_0_config": stage_config}
    _check_resume(out, record)
    if not (out / RUN_FILE).is_file():
        atomic_write_text(out / RUN_FILE, json.dumps(record, indent=2) + "\n")
    return spec, _Run(spec, out, stage_config, datamodules, cache_dir)


def _write_reports(
    out: Path, spec: ContinualSpec, summary: dict[str, Any], label: str | None
) -> None:
    from ldifs_lightning.continual.report import (
        format_continual_table,
        plot_foreign_deltas,
        plot_matrix,
        write_matrix_csv,
        write_metrics_csv,
    )

    label = label or " + ".join(Path(m).name for m in spec.method)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    write_matrix_csv(out / "matrix.csv", list(spec.tasks), summary["matrix"])
    write_metrics_csv(out / "metrics.csv", {label: summary["metrics"]})
    plot_matrix(out / "matrix.png", list(spec.tasks), summary["matrix"], f"{label}: accuracy (%)")
    if spec.suite:
        foreign = {label: [r["foreign"] for r in summary["stages"]]}
        plot_foreign_deltas(out / "foreign.png", list(spec.tasks), foreign)
    print(
        f"\nContinual run {' -> '.join(spec.tasks)} ({label}, reference {spec.reference}):\n"
        f"{format_continual_table({label: summary['metrics']})}\n\nWritten to {out}/"
    )


def continual(
    tasks: list[str],
    method: list[str] | str,
    reference: ReferenceChoice = "previous",
    head_init: StageHeadInit | None = None,
    epochs: list[int] | int | None = None,
    suite: list[str] | None = None,
    max_train_samples: int | None = 2000,
    max_test_samples: int | None = 1000,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
    out: Path = Path("runs/continual"),
    seed: int = 0,
    fit_args: list[str] | None = None,
    threads: int = 0,
) -> dict[str, Any]:
    """Fine-tune on a sequence of tasks, one stage each; accuracy matrix and forgetting.

    Args:
        tasks: The sequence, in order: registry names or ``folder:PATH`` (at least two).
        method: The ``ldifs fit`` config(s) every stage runs, merged in order (e.g.
            ``continual/demo/ldifs`` or ``[base/vit_b32, methods/l2sp]``).
        reference: What LDIFS / L2SP stay close to at stage i > 0: ``previous`` (stage i-1's
            final encoder), ``original`` (the pre-trained encoder) or ``best_previous`` (the
            earlier encoder, pre-trained included, with the best validation accuracy on task i).
        head_init: Each stage's fresh head: ``zeroshot`` or ``linear_probe``; null keeps the
            method config's.
        epochs: Epochs per stage: one number, one per task, or null for each task's reference
            epochs (configs/data), else the method config's trainer.max_epochs.
        suite: Foreign datasets (never trained on) measured after every stage; null for none.
        max_train_samples: Probe-training samples per foreign dataset; null for all.
        max_test_samples: Test samples per foreign dataset; null for all.
        cache_dir: Cache of the pre-trained model's foreign features; null disables it.
        out: Run directory (resumed when it holds this run).
        seed: seed_everything of every stage.
        fit_args: Arguments appended to every stage's ``ldifs fit``.
        threads: torch CPU threads; 0 keeps torch's default.
    """
    if threads < 0:
        raise ValueError(f"threads={threads} must be >= 0 (0 keeps torch's default)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(threads)
    return run_continual(
        tasks, method, reference=reference, head_init=head_init, epochs=epochs, suite=suite,
        max_train_samples=max_train_samples, max_test_samples=max_test_samples,
        cache_dir=cache_dir, out=out, seed=seed, fit_args=fit_args or (),
    )  # fmt: skip
