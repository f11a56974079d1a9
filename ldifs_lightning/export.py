"""Export a fine-tuned module as an open_clip model folder plus its classification head.

The folder loads with ``open_clip.create_model("local-dir:<folder>")``:

    <folder>/open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ...}
    <folder>/open_clip_pytorch_model.bin  full CLIP state dict, fine-tuned image tower
    <folder>/classification_head.pt       {"weight", "bias", "classnames", "templates"}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import open_clip
import torch

from ldifs_lightning.models import create_clip
from ldifs_lightning.models.factory import uses_quick_gelu
from ldifs_lightning.modules import LDIFSModule

MODEL_FILE = "open_clip_pytorch_model.bin"
CONFIG_FILE = "open_clip_config.json"
HEAD_FILE = "classification_head.pt"


def _save_atomic(obj: object, path: Path) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if isinstance(obj, (dict, list)) and path.suffix == ".json":
            Path(temp).write_text(json.dumps(obj, indent=2))
        else:
            torch.save(obj, temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def export_open_clip(module: LDIFSModule, output_dir: str | os.PathLike) -> Path:
    """Write ``module`` as an open_clip model folder (see the module docstring).

    The text tower is the module's own when it trained one (FLYP), otherwise the pre-trained one,
    rebuilt from ``model_name``/``pretrained`` (so those weights must be available).

    Example:
        >>> module = LDIFSModule.load_from_checkpoint("last.ckpt")  # doctest: +SKIP
        >>> export_open_clip(module, "exported")  # doctest: +SKIP
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    hp = module.hparams
    text_source = module.text_tower.clip if module.text_tower is not None else None
    if text_source is None:
        clip = create_clip(hp.model_name, hp.pretrained)
    else:
        clip = create_clip(hp.model_name, None, uses_quick_gelu(hp.model_name, hp.pretrained))
        text_state = {
            k: v for k, v in text_source.state_dict().items() if not k.startswith("visual")
        }
        missing = clip.load_state_dict(text_state, strict=False).missing_keys
        if any(not key.startswith("visual.") for key in missing):
            raise RuntimeError(f"the trained text tower lacks weights: {missing[:5]}")
    clip.visual.load_state_dict(module.image_encoder.state_dict())
    model_cfg = open_clip.get_model_config(hp.model_name)
    if model_cfg is None:
        raise ValueError(
            f"model_name={hp.model_name!r} has no open_clip config to export; export supports "
            "built-in and registered architectures"
        )
    if uses_quick_gelu(hp.model_name, hp.pretrained):
        model_cfg["quick_gelu"] = True  # OpenAI weights: the folder must rebuild QuickGELU
    preprocess = dict(open_clip.get_model_preprocess_cfg(clip))
    _save_atomic({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, output / CONFIG_FILE)
    _save_atomic({k: v.detach().cpu() for k, v in clip.state_dict().items()}, output / MODEL_FILE)
    head = {
        "weight": module.head.weight.detach().cpu(),
        "bias": module.head.bias.detach().cpu(),
        "classnames": list(module.classnames),
        "templates": list(module.templates),
    }
    _save_atomic(head, output / HEAD_FILE)
    return output


def export_checkpoint(ckpt_path: str, output_dir: str) -> None:
    """``ldifs export``: load a fine-tuning checkpoint and write an open_clip model folder.

    Args:
        ckpt_path: A checkpoint written by ``ldifs fit``.
        output_dir: Folder to write (created if missing).
    """
    if not Path(ckpt_path).is_file():
        raise ValueError(f"ckpt_path={ckpt_path!r} is not a file: pass a checkpoint of ldifs fit")
    module = LDIFSModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    path = export_open_clip(module, output_dir)
    print(f"wrote {path}: open_clip.create_model('local-dir:{path}') loads it")
