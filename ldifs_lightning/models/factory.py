"""Build CLIP models through open_clip: one function, clear errors, offline-friendly.

``create_clip(model_name, pretrained)`` is the one way the package builds a model. ``pretrained`` is
an open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``, ...), ``"demo"`` (the tiny CLIP shipped
with the package, for ``ldifs-tiny-vit``), a path to a local checkpoint file, or ``None`` for random
initialisation; ``model_name`` may also be an ``hf-hub:org/repo`` id. Model
architectures that open_clip does not ship (such as the tiny test models) are registered from JSON
files with :func:`register_model_config`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import open_clip
import torch
from open_clip.pretrained import (
    download_pretrained,
    get_pretrained_cfg,
    list_pretrained_tags_by_model,
)

from ldifs_lightning.pretrained import DEMO_TAG, demo_weights

_BUNDLED_CONFIGS = Path(__file__).parent / "model_configs"


def register_model_config(path: str | os.PathLike) -> list[str]:
    """Register open_clip model config(s) from a JSON file or a folder of JSON files.

    The model name is the file name without ``.json``. The file holds what open_clip's own configs
    hold: ``embed_dim``, ``vision_cfg`` and ``text_cfg``.

    Args:
        path: A ``.json`` file or a folder holding ``.json`` files.

    Returns:
        The names of the registered models.

    Example:
        >>> register_model_config("my-tiny-vit.json")  # doctest: +SKIP
        ['my-tiny-vit']
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(
            f"model config {str(path)!r} does not exist: pass a .json file or a folder"
        )
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or any(f.suffix != ".json" for f in files):
        raise ValueError(f"model config {str(path)!r} is not a .json file or a folder of them")
    for file in files:
        try:
            config = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"model config {str(file)!r} is not valid JSON: {error}") from None
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(config)
        if missing:
            raise ValueError(
                f"model config {str(file)!r} lacks {sorted(missing)}: it needs embed_dim, "
                "vision_cfg and text_cfg like open_clip's own model configs"
            )
    open_clip.add_model_config(path)
    return [f.stem for f in files]


def _check_model_name(model_name: str) -> None:
    if model_name.startswith(("hf-hub:", "local-dir:")):
        return
    known = open_clip.list_models()
    if model_name.replace("/", "-") not in known:
        close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.5)
        hint = f"close matches: {close}" if close else f"{len(known)} are known, e.g. {known[:5]}"
        raise ValueError(
            f"unknown model_name {model_name!r} ({hint}); see open_clip.list_models() or register "
            "a JSON config with model_config="
        )


def resolve_pretrained(model_name: str, pretrained: str | None) -> str | None:
    """Turn a ``pretrained`` tag or path into a local checkpoint path, downloading if needed.

    Raises a one-line ``ValueError`` when the tag is unknown, the path does not exist, or a download
    is needed and fails (for example offline), saying which file to provide instead.
    """
    if pretrained is None or model_name.startswith(("hf-hub:", "local-dir:")):
        return None
    if pretrained == DEMO_TAG:  # the tiny CLIP shipped with the package, sha256-checked
        return str(demo_weights(model_name))
    name = model_name.replace("/", "-")
    if os.path.isfile(pretrained):
        return pretrained
    tag_cfg = get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = list_pretrained_tags_by_model(name)
        raise ValueError(
            f"pretrained={pretrained!r} is neither a file nor a known tag for {model_name!r} "
            f"(tags: {tags or 'none'}); pass a tag, a checkpoint path, or null for random init"
        )
    try:
        return download_pretrained(tag_cfg)
    except Exception as error:  # network errors come in many types (OSError, HF hub, urllib)
        source = tag_cfg.get("hf_hub") or tag_cfg.get("url") or "its source"
        filename = (tag_cfg.get("hf_hub") or "").rstrip("/").split("/")[-1] or Path(
            tag_cfg.get("url", "weights.pt")
        ).name
        raise ValueError(
            f"pretrained={pretrained!r} for {model_name!r} needs a download from {source} that "
            f"failed ({type(error).__name__}); fetch {filename or 'the checkpoint'} on a machine "
            "with network access and pass its local path as pretrained: /path/to/checkpoint"
        ) from None


def uses_quick_gelu(model_name: str, pretrained: str | None) -> bool:
    """Whether the weights named by an open_clip tag were trained with QuickGELU (no download)."""
    if pretrained is None or model_name.startswith(("hf-hub:", "local-dir:")):
        return False
    tag_cfg = get_pretrained_cfg(model_name.replace("/", "-"), pretrained) or {}
    return bool(tag_cfg.get("quick_gelu", False))


def create_clip(
    model_name: str, pretrained: str | None = None, quick_gelu: bool | None = None
) -> torch.nn.Module:
    """Build an open_clip CLIP model (both towers) in fp32 on the CPU.

    Args:
        model_name: An open_clip architecture (``"ViT-B-32"``, ``"RN50"``), one registered with
            :func:`register_model_config` (``"ldifs-tiny-vit"``), or ``"hf-hub:org/repo"``.
        pretrained: An open_clip tag, a local checkpoint path, or ``None`` for random init.
        quick_gelu: Build with QuickGELU activations; ``None`` follows the tag (OpenAI's weights
            were trained with QuickGELU, and open_clip only warns when the config says otherwise,
            which silently degrades features). For OpenAI weights given as a file, pass ``True``
            or use a ``-quickgelu`` model name.

    Example:
        >>> model = create_clip("ldifs-tiny-vit", pretrained=None)
        >>> model.visual.image_size
        (32, 32)
    """
    _check_model_name(model_name)
    checkpoint = resolve_pretrained(model_name, pretrained)
    if quick_gelu is None:
        quick_gelu = uses_quick_gelu(model_name, pretrained)
    is_tag = checkpoint is not None and uses_tag(model_name, pretrained)
    with _random_init_notice_dropped(pretrained is None):
        return open_clip.create_model(
            model_name,
            pretrained=pretrained if is_tag else checkpoint,
            force_quick_gelu=quick_gelu,
        )


def get_tokenizer(model_name: str) -> Callable[..., torch.Tensor]:
    """open_clip's tokenizer for ``model_name`` (texts in, token ids out).

    Models with a Hugging Face tokenizer (SigLIP, ...) need the ``transformers`` package, which
    this package does not install: without it this is a one-line ``ValueError`` saying so.

    Example:
        >>> get_tokenizer("ldifs-tiny-vit")(["a photo of a cat."]).shape[0]
        1
    """
    try:
        return open_clip.get_tokenizer(model_name)
    except ModuleNotFoundError as error:
        if error.name != "transformers":
            raise
        raise ValueError(
            f"model_name {model_name!r} uses a Hugging Face tokenizer, which needs the "
            "transformers package: pip install transformers"
        ) from error


class _RandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded for model")


@contextlib.contextmanager
def _random_init_notice_dropped(drop: bool) -> Iterator[None]:
    """Drop open_clip's root-logger warning about random init when None was asked for."""
    if not drop:
        yield
        return
    notice = _RandomInitNotice()
    logging.getLogger().addFilter(notice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice)


def uses_tag(model_name: str, pretrained: str | None) -> bool:
    """Whether ``pretrained`` is an open_clip tag of ``model_name`` (not a path or None)."""
    if pretrained is None or model_name.startswith(("hf-hub:", "local-dir:")):
        return False
    return bool(get_pretrained_cfg(model_name.replace("/", "-"), pretrained))


def embed_dim_of(clip: torch.nn.Module) -> int:
    """The width of an open_clip model's joint image-text embedding space.

    Works for ``CLIP`` (text projection on the model) and ``CustomTextCLIP`` (SigLIP, EVA02, ...:
    the text tower lives in ``clip.text``), whether the text projection is a matrix or an
    ``nn.Linear`` (towers built with ``proj_bias``).

    Example:
        >>> embed_dim_of(create_clip("ldifs-tiny-vit"))
        32
    """
    text = getattr(clip, "text", clip)
    projection = getattr(text, "text_projection", None)
    if isinstance(projection, torch.nn.Linear):
        return projection.out_features
    if isinstance(projection, torch.Tensor):
        return projection.shape[1]
    output_dim = getattr(text, "output_dim", None)
    if isinstance(output_dim, int) and output_dim > 0:
        return output_dim
    raise ValueError(
        f"cannot tell the embedding width of {type(clip).__name__}: its text tower has neither a "
        "text_projection nor an output_dim; use an open_clip model with a projected text tower"
    )


def image_encoder_of(clip: torch.nn.Module) -> torch.nn.Module:
    """The image tower (``clip.visual``) of an open_clip model.

    torch types a module's attributes as ``Tensor | Module``; this narrows to the module.

    Example:
        >>> type(image_encoder_of(create_clip("ldifs-tiny-vit"))).__name__
        'VisionTransformer'
    """
    visual = clip.visual
    if not isinstance(visual, torch.nn.Module):
        raise TypeError(
            f"{type(clip).__name__}.visual is a {type(visual).__name__}, not an image tower; "
            "pass an open_clip model"
        )
    return visual


def logit_scale_of(clip: torch.nn.Module) -> torch.Tensor:
    """The learned log temperature (``clip.logit_scale``) of an open_clip model.

    Example:
        >>> logit_scale_of(create_clip("ldifs-tiny-vit")).shape
        torch.Size([])
    """
    scale = clip.logit_scale
    if not isinstance(scale, torch.Tensor):
        raise TypeError(
            f"{type(clip).__name__}.logit_scale is a {type(scale).__name__}, not a tensor; "
            "pass an open_clip model"
        )
    return scale


def image_size_of(encoder: torch.nn.Module) -> int:
    """The square input size an image encoder (``clip.visual``) expects."""
    size = getattr(encoder, "image_size", 224)
    return int(size[0] if isinstance(size, tuple | list) else size)


register_model_config(_BUNDLED_CONFIGS)
