"""``ldifs evaluate``: concept forgetting and task accuracy of saved models, offline.

    ldifs evaluate --paths [runs/ft/last.ckpt,runs/ldifs/last.ckpt] --suite [digits,shapes]
    ldifs evaluate --paths [exported/] --suite [eurosat,svhn] --model_name ViT-B-32 \\
        --pretrained openai --task eurosat --root data --out runs/evaluate

Each path is a checkpoint of ``ldifs fit`` (``.ckpt``) or a folder of ``ldifs export``. For every
foreign dataset of the suite it measures what :class:`~ldifs_lightning.ConceptForgettingCallback`
measures during training (the same plain functions of
:mod:`ldifs_lightning.evaluation.forgetting`): A_LP (a linear probe on the l2-normalised
features), A_ZS (zero-shot with the pre-trained text tower's class embeddings, or the model's own
text tower when it was trained, as FLYP's is), the deltas from the pre-trained encoder and the
expected calibration error next to each. The pre-trained encoder is the checkpoint's
``model_name``/``pretrained``; an export folder needs them as options. With a task (the
checkpoint's own dataset by default), the test accuracy of the model's own head on that dataset.
By default the splits are whole (no caps): these are the final numbers.

Everything is checked before anything is measured: paths, suite, task, and the datasets' files.
Results go to ``OUT/evaluation.csv`` (one row per model x dataset), ``OUT/evaluation.json``
(everything) and ``OUT/evaluation.png``; the tables are printed.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, cast

import matplotlib as mpl
import open_clip
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from ldifs_lightning.atomic import atomic_write, atomic_write_text
from ldifs_lightning.callbacks.forgetting import DEFAULT_CACHE_DIR
from ldifs_lightning.data import FineTuneDataModule, get_dataset_info
from ldifs_lightning.evaluation.feature_cache import FeatureCache
from ldifs_lightning.evaluation.forgetting import (
    Metric,
    check_metrics,
    encoder_accuracies,
    forgetting_deltas,
    pretrained_reference,
    text_tower_classifier,
)
from ldifs_lightning.evaluation.suite import ForeignDataset, check_sample_caps, registry_suite
from ldifs_lightning.export import CONFIG_FILE, HEAD_FILE, MODEL_FILE, load_checkpoint_module
from ldifs_lightning.models import create_clip, image_encoder_of, image_size_of, resolve_pretrained
from ldifs_lightning.models.text_tower import TextTower
from ldifs_lightning.reporting.console import format_forgetting_table
from ldifs_lightning.reporting.csv_files import HISTORY_COLUMNS, history_rows

#: Files ``evaluate`` writes into ``out``.
CSV_FILE, JSON_FILE, PLOT_FILE = "evaluation.csv", "evaluation.json", "evaluation.png"
#: Columns of ``evaluation.csv``: the model, then ``forgetting.csv``'s per-dataset columns (no
#: epoch or step), then per model the suite means and the task accuracy (repeated on its rows).
CSV_COLUMNS = (
    "model",
    "kind",
    "method",
    *(c for c in HISTORY_COLUMNS if c not in ("epoch", "step")),
    "mean_delta_lp",
    "mean_delta_zs",
    "mean_delta_lp_ece",
    "mean_delta_zs_ece",
    "task",
    "task_acc",
)

Device = Literal["cpu", "cuda", "auto"]


@dataclass(frozen=True)
class ModelEvaluation:
    """What ``evaluate_models`` measured for one saved model (accuracies in %).

    Attributes:
        path: The checkpoint or export folder, as given.
        kind: ``checkpoint`` or ``export``.
        method: A checkpoint's fine-tuner class (``LDIFSModule``, ...); ``export`` for a folder.
        model_name: open_clip name of the pre-trained model the baseline was measured with.
        pretrained: Its weights (tag or path).
        text_tower: ``pretrained``, or ``current`` when zero-shot used the model's own trained
            text tower (FLYP); None without ``zero_shot``.
        pretrained_accuracies: Per dataset, the pre-trained encoder's ``lp_acc``, ``lp_ece``,
            ``zs_acc``, ``zs_ece``.
        accuracies: Per dataset, the same for this model.
        metrics: :func:`~ldifs_lightning.evaluation.forgetting.forgetting_deltas` of the two (the
            keys the callback logs under ``forgetting/``).
        task: The dataset whose test split measured ``task_acc``, or None.
        task_acc: Test accuracy of the model's own head on ``task``, or None.
        task_test_images: Number of test images ``task_acc`` was measured on, or None.
    """

    path: str
    kind: Literal["checkpoint", "export"]
    method: str
    model_name: str
    pretrained: str | None
    text_tower: str | None
    pretrained_accuracies: dict[str, dict[str, float]]
    accuracies: dict[str, dict[str, float]]
    metrics: dict[str, float]
    task: str | None
    task_acc: float | None
    task_test_images: int | None


@dataclass
class _LoadedModel:
    """A saved model in memory: what is measured and what it is compared with."""

    image_encoder: nn.Module
    text_tower: TextTower | None  # a trained text tower (FLYP); None: the pre-trained one is used
    head_weight: torch.Tensor | None
    head_bias: torch.Tensor | None
    model_name: str
    pretrained: str | None
    method: str
    recorded_task: str | None  # the checkpoint's DataModule dataset


@dataclass(frozen=True)
class _Source:
    """A path checked before measuring: its kind, baseline, image size and task."""

    path: str
    kind: Literal["checkpoint", "export"]
    model_name: str
    pretrained: str | None
    image_size: int
    task: str | None


# ----------------------------------------------------------------------------- loading


def _load(
    path: str, model_name: str | None, pretrained: str | None
) -> tuple[Literal["checkpoint", "export"], _LoadedModel]:
    """Load a checkpoint of ``ldifs fit`` or an ``ldifs export`` folder on the CPU, in eval mode."""
    location = Path(path)
    if not location.exists():
        raise FileNotFoundError(
            f"path {path!r} does not exist: give checkpoints of ldifs fit (.ckpt) or folders "
            "written by ldifs export"
        )
    if location.is_dir():
        return "export", _load_export(location, path, model_name, pretrained)
    try:
        module, dataset = load_checkpoint_module(path)
    except ValueError as error:
        raise ValueError(
            f"path {path!r} is a file that does not load as a checkpoint of ldifs fit ({error})"
        ) from None
    source = module.encoder_source
    return "checkpoint", _LoadedModel(
        image_encoder=module.image_encoder,
        text_tower=cast(TextTower | None, getattr(module, "text_tower", None)),
        head_weight=module.head.weight.detach(),
        head_bias=module.head.bias.detach(),
        model_name=source.model_name,
        pretrained=source.pretrained,
        method=type(module).__name__,
        recorded_task=dataset,
    )


def _load_export(
    folder: Path, shown: str, model_name: str | None, pretrained: str | None
) -> _LoadedModel:
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(
            f"path {shown!r} is a folder without {CONFIG_FILE}: give a folder written by "
            "ldifs export or a checkpoint of ldifs fit"
        )
    if not (folder / MODEL_FILE).is_file():
        raise ValueError(
            f"path {shown!r} is a folder with {CONFIG_FILE} but without {MODEL_FILE}: give a "
            "complete folder written by ldifs export"
        )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"path {shown!r}: {CONFIG_FILE} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model_cfg" not in config:
        raise ValueError(f"path {shown!r}: {CONFIG_FILE} has no model_cfg, so it is no export")
    # An export may record what it was fine-tuned from; the options take precedence.
    model_name = model_name or config.get("model_name")
    pretrained = pretrained or config.get("pretrained")
    if not model_name or not pretrained:
        missing = " and ".join(
            name for name, v in [("model_name", model_name), ("pretrained", pretrained)] if not v
        )
        raise ValueError(
            f"path {shown!r} is an export folder, which does not record the pre-trained model it "
            f"was fine-tuned from: give {missing} (e.g. ldifs-tiny-vit + demo, ViT-B-32 + openai)"
        )
    resolve_pretrained(model_name, pretrained)  # an unknown tag or missing file fails here
    try:
        clip = open_clip.create_model(f"local-dir:{folder}").eval()
    except Exception as error:
        raise ValueError(
            f"path {shown!r}: open_clip cannot build the model of this export folder "
            f"({type(error).__name__}: {' '.join(str(error).split())[:300]})"
        ) from None
    head = None
    if (folder / HEAD_FILE).is_file():
        head = torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True)
    image_encoder = image_encoder_of(clip)
    trained = _text_tower_differs(clip, create_clip(model_name, pretrained), shown)
    return _LoadedModel(
        image_encoder=image_encoder,
        # TextTower keeps only the text side: the image encoder was taken out above.
        text_tower=TextTower(clip, model_name).eval() if trained else None,
        head_weight=head["weight"] if head else None,
        head_bias=head["bias"] if head else None,
        model_name=model_name,
        pretrained=pretrained,
        method="export",
        recorded_task=None,
    )


def _text_tower_differs(clip: nn.Module, pretrained_clip: nn.Module, shown: str) -> bool:
    """Whether an export's text tower was trained (FLYP): its weights differ from the pre-trained
    model's. An export of any other method holds the pre-trained text tower unchanged."""
    mine = {k: v for k, v in clip.state_dict().items() if not k.startswith("visual.")}
    theirs = {k: v for k, v in pretrained_clip.state_dict().items() if not k.startswith("visual.")}
    shapes = {k: v.shape for k, v in mine.items()}
    if shapes != {k: v.shape for k, v in theirs.items()}:
        raise ValueError(
            f"path {shown!r}: the folder's text tower does not have the architecture of the "
            "given model_name; give the model_name and pretrained it was fine-tuned from"
        )
    return any(not torch.equal(value, theirs[key]) for key, value in mine.items())


# ----------------------------------------------------------------------------- checks


def _check_options(
    suite: Sequence[str],
    metrics: Sequence[str],
    max_train_samples: int | None,
    max_test_samples: int | None,
    batch_size: int,
    num_workers: int,
    device: str,
) -> None:
    if not suite:
        raise ValueError("the suite is empty: name at least one dataset (e.g. --suite [digits])")
    check_metrics(metrics)
    check_sample_caps(max_train_samples, max_test_samples)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be >= 0")
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device={device!r} must be 'cpu', 'cuda' or 'auto'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; use 'cpu' or 'auto'")
    for name in suite:
        info = get_dataset_info(name)  # unknown names fail here
        if "zero_shot" in metrics and not info.classnames:
            raise ValueError(f"dataset {name!r} has no class names; zero_shot needs them")


def _check_source(
    path: str, kind: Literal["checkpoint", "export"], model: _LoadedModel, task: str | None
) -> _Source:
    """The task a model is tested on (given, else the checkpoint's own), checked with its head."""
    if task is not None and model.head_weight is None:
        raise ValueError(
            f"task={task!r} but {path!r} has no classification head ({HEAD_FILE}); leave task "
            "unset or export the model with its head"
        )
    chosen = task if task is not None else model.recorded_task
    if chosen is not None and model.head_weight is not None:
        try:
            classes = len(get_dataset_info(chosen).classnames)
        except ValueError:
            if task is not None:
                raise
            chosen = None  # a dataset the registry does not know (e.g. one given as loaders)
        else:
            if classes != model.head_weight.shape[0]:
                raise ValueError(
                    f"task={chosen!r} has {classes} classes but the head of {path!r} has "
                    f"{model.head_weight.shape[0]}: give the dataset the model was fine-tuned on"
                )
    return _Source(
        path,
        kind,
        model.model_name,
        model.pretrained,
        image_size_of(model.image_encoder),
        chosen if model.head_weight is not None else None,
    )


# ----------------------------------------------------------------------------- measuring


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def _task_accuracy(
    model: _LoadedModel, data: FineTuneDataModule, device: torch.device
) -> tuple[float, int]:
    """Test accuracy (in %) of the model's head on l2-normalised features, as its ``forward``."""
    assert model.head_weight is not None and model.head_bias is not None
    encoder = model.image_encoder.to(device).eval()
    weight, bias = model.head_weight.to(device), model.head_bias.to(device)
    correct = total = 0
    for images, labels in data.test_dataloader():
        logits = F.linear(F.normalize(encoder(images.to(device)), dim=-1), weight, bias)
        correct += int((logits.argmax(dim=-1) == labels.to(device)).sum())
        total += len(labels)
    if total == 0:
        raise ValueError(f"the test split of task {data.info.name!r} is empty")
    return 100.0 * correct / total, total


def evaluate_models(
    paths: Sequence[str | os.PathLike[str]],
    suite: Sequence[str],
    *,
    root: str | Path = "data",
    metrics: Sequence[Metric] = ("linear_probe", "zero_shot"),
    max_train_samples: int | None = None,
    max_test_samples: int | None = None,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
    batch_size: int = 256,
    num_workers: int = 0,
    device: Device = "auto",
    task: str | None = None,
    model_name: str | None = None,
    pretrained: str | None = None,
    seed: int = 0,
    verify_checksums: bool = True,
) -> list[ModelEvaluation]:
    """Concept forgetting (and task accuracy) of saved models, as the callback measures it.

    Every path, the suite, the task and the datasets' files are checked before anything is
    measured. The pre-trained baseline is measured once per (``model_name``, ``pretrained``).

    Args:
        paths: Checkpoints of ``ldifs fit`` and/or folders of ``ldifs export``.
        suite: Foreign datasets: registry names or ``folder:PATH``.
        root: Folder holding the datasets' files.
        metrics: Any of ``linear_probe`` and ``zero_shot``.
        max_train_samples: Per dataset cap on probe-training samples (seeded subset); None: all.
        max_test_samples: Cap on test samples (suite: seeded subset; task: the first N); None: all.
        cache_dir: Where pre-trained features are cached; None disables the cache.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        task: Dataset whose test split measures the model's own head; default the checkpoint's
            own (its DataModule's ``dataset``); an export folder's head is tested only with it.
        model_name: For export folders: open_clip name of the model they were fine-tuned from
            (checkpoints bring their own).
        pretrained: For export folders: its pre-trained weights (tag or path).
        seed: Seed of the sample caps and of the probe's held-out split (the callback's ``seed``).
        verify_checksums: md5-check CIFAR/SVHN/STL-10 files; false accepts copies you made.

    Returns:
        One :class:`ModelEvaluation` per path, in order.

    Example:
        >>> results = evaluate_models(["runs/ldifs/last.ckpt"], ["digits"])  # doctest: +SKIP
        >>> results[0].metrics["mean_delta_lp"]  # doctest: +SKIP
        -1.25
    """
    if not paths:
        raise ValueError("no paths: give checkpoints of ldifs fit and/or ldifs export folders")
    _check_options(
        suite, metrics, max_train_samples, max_test_samples, batch_size, num_workers, device
    )
    if task is not None:
        get_dataset_info(task)
    shown = [str(path) for path in paths]
    sources = []
    for path in shown:
        kind, model = _load(path, model_name, pretrained)
        sources.append(_check_source(path, kind, model, task))
        del model  # loaded again when measured: one model in memory at a time
    for baseline_model, baseline_weights in {(s.model_name, s.pretrained) for s in sources}:
        resolve_pretrained(baseline_model, baseline_weights)  # a download that fails, fails now

    # Datasets' files are read now, before any measurement.
    suites: dict[int, list[ForeignDataset]] = {}
    for size in sorted({source.image_size for source in sources}):
        suites[size] = registry_suite(
            list(suite),
            root,
            size,
            max_train_samples,
            max_test_samples,
            seed,
            download=False,
            verify_checksums=verify_checksums,
        )
    tasks: dict[tuple[str, int], FineTuneDataModule] = {}
    for source in sources:
        if source.task is not None and (source.task, source.image_size) not in tasks:
            data = FineTuneDataModule(
                source.task,
                root=str(root),
                batch_size=batch_size,
                num_workers=num_workers,
                image_size=source.image_size,
                max_test_samples=max_test_samples,
                verify_checksums=verify_checksums,
            )
            data.setup("test")
            tasks[(source.task, source.image_size)] = data

    torch_device = _resolve_device(device)
    cache = FeatureCache(Path(os.path.expanduser(cache_dir))) if cache_dir is not None else None
    accuracies = functools.partial(
        encoder_accuracies,
        metrics=list(metrics),
        device=torch_device,
        batch_size=batch_size,
        num_workers=num_workers,
        probe_seed=seed,
    )
    baselines: dict[tuple[str, str | None], tuple[dict, dict | None, float]] = {}
    results = []
    for source in sources:
        key = (source.model_name, source.pretrained)
        if key not in baselines:
            # The same architecture as the fine-tuned model: the same input size, the same suite.
            members = suites[source.image_size]
            reference = pretrained_reference(
                source.model_name,
                source.pretrained,
                members,
                metrics=list(metrics),
                device=torch_device,
            )
            measured = accuracies(
                reference.encoder,
                members,
                class_embeddings=reference.class_embeddings,
                cache=cache,
                zero_shot_scale=reference.zero_shot_scale,
            )
            baselines[key] = (measured, reference.class_embeddings, reference.zero_shot_scale)
            del reference
        baseline, class_embeddings, scale = baselines[key]
        _, model = _load(source.path, model_name, pretrained)
        members = suites[source.image_size]
        text_tower = None
        if "zero_shot" in metrics:
            text_tower = "pretrained"
            if model.text_tower is not None:  # as the callback does for a module's text tower
                tower = model.text_tower.to(torch_device)
                class_embeddings, scale = text_tower_classifier(tower, members)
                text_tower = "current"
        current = accuracies(
            model.image_encoder.to(torch_device).eval(),
            members,
            class_embeddings=class_embeddings,
            zero_shot_scale=scale,
        )
        task_acc = task_images = None
        if source.task is not None:
            task_acc, task_images = _task_accuracy(
                model, tasks[(source.task, source.image_size)], torch_device
            )
        results.append(
            ModelEvaluation(
                path=source.path,
                kind=source.kind,
                method=model.method,
                model_name=source.model_name,
                pretrained=source.pretrained,
                text_tower=text_tower,
                pretrained_accuracies=baseline,
                accuracies=current,
                metrics=forgetting_deltas(baseline, current),
                task=source.task,
                task_acc=task_acc,
                task_test_images=task_images,
            )
        )
        del model
    return results


# ----------------------------------------------------------------------------- reports


def evaluation_rows(results: Sequence[ModelEvaluation]) -> list[dict[str, object]]:
    """One row per (model, dataset) with :data:`CSV_COLUMNS` (None: not measured).

    Example:
        >>> result = ModelEvaluation("a.ckpt", "checkpoint", "LDIFSModule", "m", "p", None,
        ...     {"d": {"lp_acc": 80.0}}, {"d": {"lp_acc": 70.0}},
        ...     {"d/lp_acc": 70.0, "d/delta_lp": -10.0, "mean_delta_lp": -10.0}, "t", 90.0, 10)
        >>> row = evaluation_rows([result])[0]
        >>> row["delta_lp"], row["mean_delta_lp"], row["task_acc"], row["zs_acc"]
        (-10.0, -10.0, 90.0, None)
    """
    rows = []
    for result in results:
        entry = {"epoch": None, "step": None, "accuracies": result.accuracies}
        for row in history_rows(
            result.pretrained_accuracies, [{**entry, "text_tower": result.text_tower}]
        ):
            rows.append(
                {
                    "model": result.path,
                    "kind": result.kind,
                    "method": result.method,
                    **{k: v for k, v in row.items() if k not in ("epoch", "step")},
                    **{
                        key: result.metrics.get(key)
                        for key in CSV_COLUMNS
                        if key.startswith("mean_delta_")
                    },
                    "task": result.task,
                    "task_acc": result.task_acc,
                }
            )
    return rows


def write_evaluation_csv(results: Sequence[ModelEvaluation], path: str | Path) -> None:
    """Write :func:`evaluation_rows` as a CSV file (empty cells: not measured), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in evaluation_rows(results):
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in CSV_COLUMNS})
    atomic_write_text(path, text.getvalue())


def plot_evaluation(results: Sequence[ModelEvaluation], path: str | Path) -> None:
    """Accuracy per foreign dataset, one bar per model, one panel per metric; pre-trained dashed.

    Example:
        >>> plot_evaluation(evaluate_models(["last.ckpt"], ["digits"]), "e.png")  # doctest: +SKIP
    """
    datasets = list(dict.fromkeys(name for r in results for name in r.accuracies))
    panels = [
        m
        for m in ("lp", "zs")
        if any(f"{m}_acc" in row for r in results for row in r.accuracies.values())
    ]
    figure = Figure(figsize=(max(5.5, 1.4 * len(datasets) + 2) * max(1, len(panels)), 4))
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(1, len(results))
    titles = {"lp": "linear probe", "zs": "zero-shot"}
    for ax, metric in zip(axes, panels, strict=False):
        for index, result in enumerate(results):
            offsets = [x - 0.4 + width * (index + 0.5) for x in range(len(datasets))]
            values = [result.accuracies.get(d, {}).get(f"{metric}_acc", 0.0) for d in datasets]
            color = colors[index % len(colors)]
            ax.bar(offsets, values, width, color=color, label=Path(result.path).name)
            for x, name in zip(offsets, datasets, strict=True):
                before = result.pretrained_accuracies.get(name, {}).get(f"{metric}_acc")
                if before is not None:
                    ax.hlines(before, x - width / 2, x + width / 2, colors="k", linestyles="--")
        ax.set_xticks(range(len(datasets)), datasets)
        ax.set_title(f"{titles[metric]} accuracy on foreign datasets (dashed: pre-trained)")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))


def format_evaluation(results: Sequence[ModelEvaluation]) -> str:
    """Per model: a header line with the task accuracy, then the callback's forgetting table."""
    blocks = []
    for result in results:
        task = (
            f"task {result.task}: {result.task_acc:.2f}% on {result.task_test_images} images"
            if result.task_acc is not None
            else "no task accuracy"
        )
        text_tower = f", zero-shot text tower: {result.text_tower}" if result.text_tower else ""
        header = f"{result.path} ({result.method}; {task}{text_tower})"
        table = format_forgetting_table(result.metrics, result.pretrained_accuracies)
        blocks.append(f"{header}\n{table}")
    return "\n\n".join(blocks)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file: give a folder for the evaluation's files")
    for name in (CSV_FILE, JSON_FILE, PLOT_FILE):
        if (out / name).is_dir():
            raise ValueError(f"out={str(out)!r} holds a folder named {name}: remove it first")


def evaluate(
    paths: list[str],
    suite: list[str],
    root: str = "data",
    metrics: list[Metric] | None = None,
    max_train_samples: int | None = None,
    max_test_samples: int | None = None,
    cache_dir: str | None = DEFAULT_CACHE_DIR,
    batch_size: int = 256,
    num_workers: int = 0,
    device: Device = "auto",
    task: str | None = None,
    model_name: str | None = None,
    pretrained: str | None = None,
    seed: int = 0,
    verify_checksums: bool = True,
    out: Path = Path("runs/evaluate"),
) -> list[ModelEvaluation]:
    """Concept forgetting and task accuracy of saved checkpoints or export folders.

    Args:
        paths: Checkpoints of ldifs fit (.ckpt) and/or folders of ldifs export, e.g.
            ``[runs/ft/last.ckpt,exported/]``.
        suite: Foreign datasets: registry names or folder:PATH, e.g. ``[digits,shapes]``.
        root: Folder holding the datasets' files.
        metrics: Any of linear_probe and zero_shot; default both.
        max_train_samples: Per dataset cap on probe-training samples (seeded); null: all.
        max_test_samples: Cap on test samples (also the task's); null: the whole test splits.
        cache_dir: Where pre-trained features are cached; null disables the cache.
        batch_size: Images per forward pass.
        num_workers: DataLoader worker processes.
        device: cpu, cuda, or auto (CUDA when available).
        task: Dataset whose test split measures the model's own head; default the checkpoint's
            own; an export folder's head is tested only when it is given.
        model_name: For export folders: the open_clip model they were fine-tuned from (e.g.
            ViT-B-32); checkpoints bring their own.
        pretrained: For export folders: its pre-trained weights (e.g. openai, demo, a file).
        seed: Seed of the sample caps and of the linear probe's held-out split.
        verify_checksums: md5-check CIFAR/SVHN/STL-10 files; false accepts copies you made.
        out: Folder for evaluation.csv, evaluation.json and evaluation.png.

    Example:
        >>> evaluate(["runs/ldifs/last.ckpt"], ["digits", "shapes"])  # doctest: +SKIP
    """
    out = Path(out)
    _check_out(out)
    chosen_metrics: list[Metric] = list(metrics) if metrics else ["linear_probe", "zero_shot"]
    settings = {
        "suite": list(suite),
        "root": str(root),
        "metrics": chosen_metrics,
        "max_train_samples": max_train_samples,
        "max_test_samples": max_test_samples,
        "seed": seed,
    }
    results = evaluate_models(
        paths,
        suite,
        root=root,
        metrics=chosen_metrics,
        max_train_samples=max_train_samples,
        max_test_samples=max_test_samples,
        cache_dir=cache_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        task=task,
        model_name=model_name,
        pretrained=pretrained,
        seed=seed,
        verify_checksums=verify_checksums,
    )
    out.mkdir(parents=True, exist_ok=True)
    write_evaluation_csv(results, out / CSV_FILE)
    document = {"settings": settings, "models": [asdict(result) for result in results]}
    atomic_write_text(out / JSON_FILE, json.dumps(document, indent=2) + "\n")
    plot_evaluation(results, out / PLOT_FILE)
    print(
        f"Concept forgetting (in %, deltas vs the pre-trained model):\n"
        f"{format_evaluation(results)}\n\n"
        f"Written to {out}/: {CSV_FILE}, {JSON_FILE}, {PLOT_FILE}"
    )
    return results
