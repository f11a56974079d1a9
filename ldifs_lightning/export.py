"""Export a CLIP model as a folder that open_clip and CLIP_benchmark read (``ldifs export``).

The source is either a checkpoint of ``ldifs fit`` (the fine-tuned image tower, its head, class
names and templates) or a pre-trained open_clip model (``model_name`` + ``pretrained``; with a
``dataset``, a zero-shot head and that dataset's class names and templates). The folder holds::

    open_clip_config.json                   {"model_cfg": ..., "preprocess_cfg": ...}
    open_clip_pytorch_model.bin             the full CLIP state dict
    classification_head.pt                  {"weight", "bias", "classnames", "templates"}
    classnames.txt                          one class name per line, in label order
    zeroshot_classification_templates.txt   one template per line, "{c}" for the class name
    classnames.json                         {"<dataset>": [class names]}
    zeroshot_classification_templates.json  {"<dataset>": ["{c}" templates]}

The last five exist only when there is a head (always with a checkpoint). The ``.txt`` files are
the names CLIP_benchmark's webdataset format keeps in a dataset folder; the ``.json`` files are
what its ``--custom_classname_file`` / ``--custom_template_file`` read, keyed by the dataset name
given to its ``--dataset``. ``open_clip.create_model_and_transforms("local-dir:<folder>")`` loads
the model.

Nothing is half-written: the folder is assembled in a hidden sibling (``.<name>.tmp-<id>``) and
moved into place at the end (swapped atomically with a previous export on Linux). A failure leaves
no folder behind and an earlier export in the same place untouched. An existing folder is replaced
only when it is empty or holds nothing but export files. Files get the mode any new file gets
under the user's umask (0644 under umask 022).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shlex
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import open_clip
import torch
from open_clip.pretrained import get_pretrained_cfg
from open_clip.transform import merge_preprocess_dict
from torch import nn

from ldifs_lightning.data import get_dataset_info
from ldifs_lightning.data.registry import FOLDER_PREFIX
from ldifs_lightning.models import (
    build_zero_shot_head,
    create_clip,
    get_tokenizer,
    image_encoder_of,
    register_model_config,
)
from ldifs_lightning.models.factory import uses_quick_gelu, uses_tag
from ldifs_lightning.modules import CLIPFineTuner

MODEL_FILE = "open_clip_pytorch_model.bin"
CONFIG_FILE = "open_clip_config.json"
HEAD_FILE = "classification_head.pt"
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
CLASSNAMES_JSON = "classnames.json"
TEMPLATES_JSON = "zeroshot_classification_templates.json"
#: Every file an export writes: a folder holding only these is a previous export and is replaced.
EXPORT_FILES = frozenset(
    {
        MODEL_FILE,
        CONFIG_FILE,
        HEAD_FILE,
        CLASSNAMES_FILE,
        TEMPLATES_FILE,
        CLASSNAMES_JSON,
        TEMPLATES_JSON,
    }
)
#: Key of the ``.json`` files when the dataset is not known (a module trained on plain loaders).
UNKNOWN_DATASET_KEY = "custom"
# Registry names that CLIP_benchmark spells differently; both spellings key the .json files.
_CLIP_BENCHMARK_NAMES = {"imagenet": "imagenet1k"}


@dataclass(frozen=True)
class _TaskHead:
    """A classification head with the class names and templates it was built from.

    Attributes:
        weight: ``[num_classes, embed_dim]``, applied to l2-normalised image features.
        bias: ``[num_classes]``.
        classnames: One name per class, in label order.
        templates: Prompt templates with one ``{}`` each.
        dataset: The dataset name the ``.json`` files are keyed by.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    dataset: str

    def __post_init__(self) -> None:
        # One name or template per line: a line break inside one cannot be written.
        for kind, values in [("class name", self.classnames), ("template", self.templates)]:
            for value in values:
                if "\n" in value or "\r" in value:
                    raise ValueError(
                        f"{kind} {value!r} contains a line break; the .txt files hold one per line"
                    )


def export_model(
    output_dir: str,
    ckpt_path: str | None = None,
    model_name: str | None = None,
    pretrained: str | None = None,
    dataset: str | None = None,
    model_config: str | None = None,
) -> Path:
    """Write a fine-tuned or pre-trained CLIP as a folder open_clip and CLIP_benchmark load.

    Give either ``ckpt_path`` or ``model_name`` + ``pretrained``. The folder loads with
    ``open_clip.create_model_and_transforms("local-dir:OUTPUT_DIR")``; with a head it also holds
    the class names and templates in CLIP_benchmark's formats. It is written in a temporary
    sibling folder and moved into place at the end, so a failed export writes nothing.

    Args:
        output_dir: Folder to write: new, empty, or a previous export (replaced as a whole).
            A folder holding other files is refused.
        ckpt_path: A checkpoint of ``ldifs fit``: the fine-tuned image tower, the trained head,
            its class names and templates (the text tower is FLYP's trained one, else the
            pre-trained one, rebuilt from the checkpoint's model_name/pretrained).
        model_name: Without a checkpoint: an open_clip architecture (``ViT-B-32``,
            ``ldifs-tiny-vit``, a ``local-dir:``/``hf-hub:`` id).
        pretrained: Without a checkpoint: an open_clip tag (``openai``), ``demo`` (the shipped
            tiny CLIP) or a checkpoint file of the weights.
        dataset: Without a checkpoint, optional: a registry name (``eurosat``) or
            ``folder:PATH`` whose class names and templates build a zero-shot head; without it
            only the model is written.
        model_config: Without a checkpoint, optional: an open_clip-style JSON config (or folder)
            to register first, for an architecture open_clip does not ship.

    Returns:
        The folder written.
    """
    output = _output_path(output_dir)
    if ckpt_path is not None:
        given = [
            f"{name}={value!r}"
            for name, value in [
                ("model_name", model_name),
                ("pretrained", pretrained),
                ("dataset", dataset),
                ("model_config", model_config),
            ]
            if value is not None
        ]
        if given:
            raise ValueError(
                f"ckpt_path with {', '.join(given)}: a checkpoint brings its own model, head, "
                "class names and templates; give either ckpt_path or model_name + pretrained"
            )
        _check_output_dir(output)
        module, dataset_name = load_checkpoint_module(ckpt_path)
        clip, config = _full_clip(module)
        head = _module_head(module, dataset_name)
    else:
        if model_name is None or pretrained is None:
            missing = " and ".join(
                name
                for name, value in [("model_name", model_name), ("pretrained", pretrained)]
                if value is None
            )
            raise ValueError(
                f"no {missing}: give ckpt_path (a checkpoint of ldifs fit) or model_name + "
                "pretrained (e.g. ViT-B-32 + openai, or ldifs-tiny-vit + demo)"
            )
        info = get_dataset_info(dataset) if dataset is not None else None
        _check_output_dir(output)
        if model_config is not None:
            register_model_config(model_config)
        clip = create_clip(model_name, pretrained)
        config = _open_clip_config(clip, model_name, pretrained)
        head = None
        if info is not None:
            linear = build_zero_shot_head(
                clip, get_tokenizer(model_name), info.classnames, info.templates
            )
            head = _TaskHead(
                linear.weight.detach(),
                linear.bias.detach(),
                info.classnames,
                info.templates,
                benchmark_dataset_name(info.name),
            )
    _write_export(output, clip, config, head)
    print(f"wrote {output}: open_clip.create_model_and_transforms('local-dir:{output}') loads it")
    if head is not None:
        print(f"evaluate it: {clip_benchmark_command(output, head.dataset)}")
    return output


def export_open_clip(
    module: CLIPFineTuner, output_dir: str | os.PathLike[str], dataset: str | None = None
) -> Path:
    """Write a module in memory (e.g. after ``Trainer.fit``) as an export folder.

    Args:
        module: The fine-tuned module.
        output_dir: Folder to write (see :func:`export_model`).
        dataset: Name the ``.json`` class-name and template files are keyed by (CLIP_benchmark's
            ``--dataset``); default ``custom``.

    Example:
        >>> module = CLIPFineTuner.load_from_checkpoint("last.ckpt")  # doctest: +SKIP
        >>> export_open_clip(module, "exported", dataset="eurosat")  # doctest: +SKIP
    """
    output = _output_path(output_dir)
    _check_output_dir(output)
    clip, config = _full_clip(module)
    return _write_export(output, clip, config, _module_head(module, dataset))


def clip_benchmark_command(folder: Path, dataset: str) -> str:
    """The ``clip_benchmark eval`` command line that evaluates an export on ``dataset``.

    ``wds/<dataset>`` is a dataset in CLIP_benchmark's webdataset format (its built-in names,
    such as ``cifar10``, work too); its images come from ``--dataset_root``.
    """
    return shlex.join(
        [
            "clip_benchmark",
            "eval",
            "--model",
            f"local-dir:{folder}",
            "--pretrained",
            "",
            "--dataset",
            f"wds/{dataset}",
            "--dataset_root",
            "DATASET_DIR",
            "--custom_classname_file",
            str(folder / CLASSNAMES_JSON),
            "--custom_template_file",
            str(folder / TEMPLATES_JSON),
            "--output",
            f"{dataset}.json",
        ]
    )


def benchmark_dataset_name(dataset: str) -> str:
    """The name CLIP_benchmark's ``--dataset wds/<name>`` uses for a dataset of this package.

    A registry name is kept; an image folder ``folder:PATH`` becomes the folder's name.

    Example:
        >>> benchmark_dataset_name("folder:/data/pets/")
        'pets'
    """
    if dataset.startswith(FOLDER_PREFIX):
        return Path(dataset[len(FOLDER_PREFIX) :]).expanduser().name or dataset
    return dataset


# ----------------------------------------------------------------------------- sources


def load_checkpoint_module(ckpt_path: str) -> tuple[CLIPFineTuner, str | None]:
    """Load a checkpoint of ``ldifs fit`` on the CPU, with one-line errors for anything else.

    Returns:
        The module and the dataset name its DataModule recorded (``None`` when it recorded none).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise ValueError(
            f"ckpt_path={ckpt_path!r} is not a file: pass a checkpoint written by ldifs fit"
        )
    checkpoint = _read_torch_file(path, ckpt_path)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        found = (
            "a state dict of weights (for pre-trained weights pass model_name and "
            "pretrained=<this file> instead)"
            if isinstance(checkpoint, Mapping)
            and checkpoint
            and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
            else f"a {type(checkpoint).__name__} without a 'state_dict'"
        )
        raise ValueError(f"ckpt_path={ckpt_path!r} is {found}, not a checkpoint of ldifs fit")
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or not {"classnames", "model_name"} <= set(hparams):
        keys = sorted(hparams)[:8] if isinstance(hparams, Mapping) else "none"
        raise ValueError(
            f"ckpt_path={ckpt_path!r} is a checkpoint without fine-tuning module hyper-parameters "
            f"(hyper_parameters keys: {keys}); pass a checkpoint written by ldifs fit"
        )
    data_hparams = checkpoint.get("datamodule_hyper_parameters")
    dataset = data_hparams.get("dataset") if isinstance(data_hparams, Mapping) else None
    del checkpoint
    try:
        module = CLIPFineTuner.load_from_checkpoint(path, map_location="cpu")
    except (RuntimeError, KeyError, TypeError) as error:
        why = f"it lacks the key {error.args[0]!r}" if isinstance(error, KeyError) else error
        raise ValueError(
            f"ckpt_path={ckpt_path!r} does not load into a fine-tuning module: {_one_line(why)}"
        ) from error
    return module.eval(), dataset if isinstance(dataset, str) else None


def _read_torch_file(path: Path, shown: str) -> Any:
    """``torch.load(weights_only=True)`` of ``path``; one-line errors name it as ``shown``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a legacy (non-zip) file cannot be memory-mapped: try it plainly
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        message = str(error)
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        if refused:
            raise ValueError(
                f"ckpt_path={shown!r} is a torch file that does not load with weights_only=True "
                f"(it pickles {refused.group(1)}); pass a checkpoint written by ldifs fit"
            ) from None
        unpickler = message.partition("WeightsUnpickler error:")[2]
        detail = _one_line(unpickler) if unpickler.strip() else _one_line(error)
        raise ValueError(
            f"ckpt_path={shown!r} is not a torch checkpoint ({type(error).__name__}: {detail})"
        ) from None


def _one_line(error: BaseException | str, limit: int = 300) -> str:
    """The error's message on one line, shortened to ``limit`` characters."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _full_clip(module: CLIPFineTuner) -> tuple[nn.Module, dict[str, Any]]:
    """The full CLIP of a module (its image tower, FLYP's or the pre-trained text tower) and its
    open_clip config."""
    # The encoder's source, not hparams: CLIPPretrainModule has no `pretrained` argument.
    model_name, pretrained = module.encoder_source.model_name, module.encoder_source.pretrained
    quick_gelu = uses_quick_gelu(model_name, pretrained)
    text_tower = getattr(module, "text_tower", None)
    if text_tower is None:
        clip = create_clip(model_name, pretrained, quick_gelu)
    else:
        clip = create_clip(model_name, None, quick_gelu)
        text_state = {
            k: v for k, v in text_tower.clip.state_dict().items() if not k.startswith("visual")
        }
        missing = clip.load_state_dict(text_state, strict=False).missing_keys
        if any(not key.startswith("visual.") for key in missing):
            raise RuntimeError(f"the trained text tower lacks weights: {missing[:5]}")
    image_encoder_of(clip).load_state_dict(module.image_encoder.state_dict())
    return clip.eval(), _open_clip_config(clip, model_name, pretrained)


def _open_clip_config(clip: nn.Module, model_name: str, pretrained: str | None) -> dict[str, Any]:
    """``{"model_cfg", "preprocess_cfg"}`` as ``open_clip_config.json`` holds them."""
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ValueError(
            f"model_name={model_name!r} has no open_clip config to export; export supports "
            "built-in and registered architectures"
        )
    if uses_quick_gelu(model_name, pretrained):
        model_cfg["quick_gelu"] = True  # OpenAI weights: the folder must rebuild QuickGELU
    tag_cfg = (
        get_pretrained_cfg(model_name.replace("/", "-"), pretrained)
        if pretrained is not None and uses_tag(model_name, pretrained)
        else {}
    )
    # The tag's mean/std/interpolation, also when the model was rebuilt without the tag (FLYP).
    preprocess = merge_preprocess_dict(dict(open_clip.get_model_preprocess_cfg(clip)), tag_cfg)
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess}


def _module_head(module: CLIPFineTuner, dataset: str | None) -> _TaskHead:
    """The module's head with its class names and templates."""
    return _TaskHead(
        module.head.weight.detach(),
        module.head.bias.detach(),
        tuple(module.classnames),
        tuple(module.templates),
        benchmark_dataset_name(dataset) if dataset else UNKNOWN_DATASET_KEY,
    )


# ----------------------------------------------------------------------------- writing


def _write_export(
    output: Path, clip: nn.Module, config: Mapping[str, Any], head: _TaskHead | None
) -> Path:
    """Write the export folder in a temporary sibling and move it into place."""
    with _staged_folder(output) as folder:
        _write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        _write_torch(
            folder / MODEL_FILE, {k: v.detach().cpu() for k, v in clip.state_dict().items()}
        )
        if head is not None:
            _write_head(folder, head)
    return output


def _write_head(folder: Path, head: _TaskHead) -> None:
    classnames = list(head.classnames)
    # CLIP_benchmark fills templates with template.format(c=classname).
    templates = [template.replace("{}", "{c}") for template in head.templates]
    _write_torch(
        folder / HEAD_FILE,
        {
            "weight": head.weight.detach().cpu(),
            "bias": head.bias.detach().cpu(),
            "classnames": classnames,
            "templates": list(head.templates),
        },
    )
    _write_text(folder / CLASSNAMES_FILE, "".join(f"{name}\n" for name in classnames))
    _write_text(folder / TEMPLATES_FILE, "".join(f"{template}\n" for template in templates))
    keys = [head.dataset] + (
        [_CLIP_BENCHMARK_NAMES[head.dataset]] if head.dataset in _CLIP_BENCHMARK_NAMES else []
    )
    _write_text(
        folder / CLASSNAMES_JSON, json.dumps(dict.fromkeys(keys, classnames), indent=2) + "\n"
    )
    _write_text(
        folder / TEMPLATES_JSON, json.dumps(dict.fromkeys(keys, templates), indent=2) + "\n"
    )


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, lambda file: file.write(text.encode("utf-8")))


def _write_torch(path: Path, obj: object) -> None:
    _write_bytes(path, lambda file: torch.save(obj, file))


def _write_bytes(path: Path, write: Callable[[BinaryIO], object]) -> None:
    # open() creates the file with mode 0666 & ~umask, as for any file the user writes.
    with open(path, "xb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())


# ----------------------------------------------------------------------------- the folder


def _output_path(output_dir: str | os.PathLike[str]) -> Path:
    output = Path(os.path.abspath(output_dir))
    if output.parent == output:
        raise ValueError(f"output_dir={str(output_dir)!r} is a file system root: give a folder")
    return output


def _check_output_dir(output: Path) -> None:
    """Refuse a file, a link, or a folder holding anything an export does not write."""
    if output.is_symlink():
        raise ValueError(
            f"output_dir={str(output)!r} is a symbolic link: give the folder it points to"
        )
    if not output.exists():
        ancestor = output.parent
        while not ancestor.exists() and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            why = "is a file" if not ancestor.is_dir() else "is not writable"
            raise ValueError(f"output_dir={str(output)!r} cannot be written: {ancestor} {why}")
        return
    if not output.is_dir():
        raise ValueError(
            f"output_dir={str(output)!r} is a file: give a new or empty folder, or a previous "
            "export to replace"
        )
    foreign = sorted(
        entry.name
        for entry in output.iterdir()
        if entry.name not in EXPORT_FILES or not entry.is_file() or entry.is_symlink()
    )
    if foreign:
        raise ValueError(
            f"output_dir={str(output)!r} holds {len(foreign)} entries an export does not write "
            f"(e.g. {foreign[:3]}); give a new or empty folder, or a previous export to replace"
        )


@contextlib.contextmanager
def _staged_folder(output: Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``output``; move it to ``output`` if the block succeeds.

    On failure the sibling and any parent folders created for it are removed again.
    """
    created: list[Path] = []
    staging = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        try:
            created = _make_parents(output.parent)
            staging.mkdir()  # mode 0777 & ~umask, like any folder the user creates
        except OSError as error:
            raise ValueError(
                f"output_dir={str(output)!r} cannot be written: {error.strerror or error} "
                f"({error.filename or output.parent})"
            ) from None
        try:
            yield staging
        except OSError as error:
            raise ValueError(
                f"writing output_dir={str(output)!r} failed: {error.strerror or error}; "
                "nothing was written there"
            ) from error
        _check_output_dir(output)  # it may have changed while the model was being written
        try:
            _publish(staging, output)
        except OSError as error:  # e.g. another process filled output_dir just now
            raise ValueError(
                f"moving the export into output_dir={str(output)!r} failed: "
                f"{error.strerror or error}; nothing was written there"
            ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for path in missing:
        path.mkdir()
    return missing


def _publish(staging: Path, output: Path) -> None:
    """Move the finished ``staging`` folder to ``output``, replacing a previous export."""
    if not output.exists() or not any(output.iterdir()):
        os.replace(staging, output)  # POSIX: a folder replaces a missing or empty one atomically
        return
    if _exchange(staging, output):
        shutil.rmtree(staging, ignore_errors=True)  # now the previous export
        return
    # No atomic swap here: move the previous export aside, then put the new one in its place.
    previous = staging.with_name(staging.name.replace(".tmp-", ".old-", 1))
    os.replace(output, previous)
    try:
        os.replace(staging, output)
    except BaseException:
        os.replace(previous, output)
        raise
    shutil.rmtree(previous, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # kernel or file system
            return False
        raise OSError(code, os.strerror(code), str(second))
    return True
