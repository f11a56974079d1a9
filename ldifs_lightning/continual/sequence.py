"""What a continual run is: the task sequence, the method, and the options checked before it starts.

A run fine-tunes one model on ``tasks[0]``, then ``tasks[1]`` from where it ended, and so on. Each
stage is an ordinary ``ldifs fit`` of the method's config(s) with ``--data.init_args.dataset`` set
to the stage's task; :func:`stage_arguments` builds that command line. Everything a user can get
wrong is checked here, before the first stage writes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ldifs_lightning.config_files import shipped_configs_dir
from ldifs_lightning.data import get_dataset_info

#: Which encoder LDIFS and L2SP stay close to at stage i > 0.
ReferenceChoice = Literal["previous", "original", "best_previous"]
REFERENCE_CHOICES: tuple[str, ...] = ("previous", "original", "best_previous")
#: How each stage's fresh head starts (None: what the method config says).
StageHeadInit = Literal["zeroshot", "linear_probe"]


@dataclass(frozen=True)
class ContinualSpec:
    """The options of a continual run that decide its results (saved as ``continual.json``).

    Attributes:
        tasks: Dataset of each stage, in order (registry names or ``folder:PATH``).
        method: The ``ldifs fit`` config(s) every stage runs, merged in order.
        reference: ``previous``, ``original`` or ``best_previous`` (see the README).
        head_init: Each stage's head: ``zeroshot``, ``linear_probe``, or None (the method's).
        epochs: Training epochs of each stage.
        fit_args: Extra ``ldifs fit`` arguments appended to every stage's command line.
        suite: Foreign datasets measured after every stage (empty: none).
        max_train_samples: Probe-training cap per foreign dataset (None: all).
        max_test_samples: Test cap per foreign dataset (None: all).
        seed: ``seed_everything`` of every stage.
    """

    tasks: tuple[str, ...]
    method: tuple[str, ...]
    reference: str
    head_init: str | None
    epochs: tuple[int, ...]
    fit_args: tuple[str, ...]
    suite: tuple[str, ...]
    max_train_samples: int | None
    max_test_samples: int | None
    seed: int

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples), as written to ``continual.json``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """The sequence's tasks, checked: at least two, each known, none twice.

    ``folder:PATH`` entries are compared by their resolved folder, so two spellings of one folder
    count as the same task.

    Example:
        >>> check_tasks(["digits", "fashion"])
        ('digits', 'fashion')
    """
    tasks = tuple(tasks)
    if len(tasks) < 2:
        raise ValueError(
            f"a continual run needs at least two tasks, got {list(tasks)}; list them in order, "
            "e.g. tasks: [svhn, cifar10, resisc45]"
        )
    seen: dict[str, str] = {}
    for task in tasks:
        name = get_dataset_info(task).name  # unknown names fail here, listing the known ones
        if name in seen:
            raise ValueError(
                f"task {task!r} is listed twice in {list(tasks)}: each task is learned once, "
                "with its own head"
            )
        seen[name] = task
    return tasks


def reference_epochs(task: str) -> int | None:
    """The task's reference epochs: ``trainer.max_epochs`` of its shipped ``configs/data`` file.

    None for datasets without one (the embedded domains, image folders).

    Example:
        >>> reference_epochs("svhn"), reference_epochs("digits")
        (10, None)
    """
    path = shipped_configs_dir() / "data" / f"{task}.yaml"
    if ":" in task or not path.is_file():
        return None
    config = yaml.safe_load(path.read_text()) or {}
    epochs = (config.get("trainer") or {}).get("max_epochs")
    return int(epochs) if epochs is not None else None


def stage_epochs(
    tasks: Sequence[str], epochs: int | Sequence[int] | None, method_epochs: int | None
) -> tuple[int, ...]:
    """Epochs of every stage: ``epochs`` (one for all, or one per task), else each task's
    reference epochs (:func:`reference_epochs`), else the method config's ``max_epochs``.

    Example:
        >>> stage_epochs(["svhn", "digits"], None, 3)
        (10, 3)
    """
    if isinstance(epochs, int):
        chosen: list[int | None] = [epochs] * len(tasks)
    elif epochs is not None:
        if len(epochs) != len(tasks):
            raise ValueError(
                f"epochs has {len(epochs)} entries for {len(tasks)} tasks: give one number for "
                "all stages or one per task"
            )
        chosen = list(epochs)
    else:
        chosen = [reference_epochs(task) or method_epochs for task in tasks]
    for task, value in zip(tasks, chosen, strict=True):
        if value is None:
            raise ValueError(
                f"no epochs for task {task!r}: it has no reference epochs and the method config "
                "sets no trainer.max_epochs; pass epochs"
            )
        if value < 1:
            raise ValueError(f"epochs={value} for task {task!r} must be at least 1")
    return tuple(int(value) for value in chosen if value is not None)


def stage_folder(out: Path, stage: int, task: str) -> Path:
    """``<out>/stage-<i>-<task>``, with a folder task's path reduced to its last part.

    Example:
        >>> stage_folder(Path("runs/c"), 1, "folder:/data/my birds").as_posix()
        'runs/c/stage-1-my_birds'
    """
    name = Path(task.split(":", 1)[1]).name if task.startswith("folder:") else task
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return out / f"stage-{stage}-{safe}"


def stage_arguments(spec: ContinualSpec, stage: int, folder: Path) -> list[str]:
    """The ``ldifs fit`` arguments of one stage (the method's configs, then the stage's task,
    epochs, head, log folder and checkpoints, then ``fit_args``).

    Example:
        >>> spec = ContinualSpec(("digits", "fashion"), ("continual/demo/ft",), "previous",
        ...                      None, (2, 2), (), (), None, None, 0)
        >>> stage_arguments(spec, 1, Path("out/stage-1"))[:4]
        ['--config', 'continual/demo/ft', '--data.init_args.dataset', 'fashion']
    """
    args: list[str] = []
    for config in spec.method:
        args += ["--config", config]
    args += [
        "--data.init_args.dataset",
        spec.tasks[stage],
        "--seed_everything",
        str(spec.seed),
        "--trainer.max_epochs",
        str(spec.epochs[stage]),
        "--trainer.default_root_dir",
        str(folder),
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(folder),
        "--trainer.logger.name",
        "",
        "--trainer.logger.version",
        "",
        "--trainer.enable_checkpointing",
        "true",
        # checkpoints/last.ckpt after every epoch, replacing the previous one: what a killed
        # stage resumes from (top-1 without a monitor keeps the latest).
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.dirpath",
        str(folder / "checkpoints"),
        "--trainer.callbacks.filename",
        "last",
        "--trainer.callbacks.save_top_k",
        "1",
    ]
    if spec.head_init is not None:
        args += ["--model.init_args.head_init", spec.head_init]
    return args + list(spec.fit_args)


def first_difference(saved: Any, current: Any, prefix: str = "") -> str | None:
    """The first key (dotted path) where two JSON-like values differ, or None if equal.

    Example:
        >>> first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}})
        'a.c'
    """
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            if key not in saved or key not in current:
                return f"{prefix}{key}"
            found = first_difference(saved[key], current[key], f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for index, (a, b) in enumerate(zip(saved, current, strict=True)):
            found = first_difference(a, b, f"{prefix}{index}.")
            if found is not None:
                return found
        return None
    return None if saved == current else prefix.rstrip(".") or "(whole config)"
