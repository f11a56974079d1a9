"""Contrastive (CLIP-loss) pre-training from scratch on captioned images of several domains.

This is the recipe of the tiny CLIP the package ships (``pretrained: demo``): both towers start
from random weights and are trained with the symmetric CLIP loss between images and captions
"<domain template>.format(<class name>)", one template drawn per image per step from the image's
own domain (digits get "the number {}.", textures "a {} texture.", ...). Run it with

    ldifs fit --config configs/demo/pretrain.yaml

At fit end the full CLIP (both towers) is written as an fp16 state dict, ``demo-clip.pt``, into the
log directory (or ``export_dir``); ``python -m ldifs_lightning.pretrained.build`` turns such a file
into the shipped weights, checksum and model-card numbers.

The module is a :class:`~ldifs_lightning.modules.FLYPModule` (contrastive loss, both towers) from
random weights, so the ``ldifs`` CLI runs it; it only changes how captions are drawn and how the
validation head is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info

from ldifs_lightning.data import get_dataset_info
from ldifs_lightning.models import create_clip
from ldifs_lightning.models.zero_shot import zero_shot_class_embeddings
from ldifs_lightning.modules.flyp import FLYPModule

DEMO_DOMAINS: tuple[str, ...] = ("digits", "fashion", "shapes", "textures")


def domain_captions(domains: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``(class name, templates of its domain)`` per label of the concatenated domains.

    Example:
        >>> domain_captions(["shapes"])[0]
        ('circle', ('a photo of a {}.', 'a drawing of a {}.', 'a {} shape.', 'a small {}.'))
    """
    return [
        (name, tuple(info.templates))
        for info in (get_dataset_info(domain) for domain in domains)
        for name in info.classnames
    ]


def full_clip_state_dict(module: FLYPModule) -> dict[str, torch.Tensor]:
    """The state dict of a whole open_clip CLIP from a module's image encoder and text tower."""
    state = {f"visual.{k}": v for k, v in module.image_encoder.state_dict().items()}
    state.update(
        {k: v for k, v in module.text_tower.clip.state_dict().items() if not k.startswith("visual")}
    )
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def export_clip(module: FLYPModule, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the module's full CLIP as a state dict (``dtype`` floats) that open_clip loads.

    The file round-trips: ``create_clip(model_name, pretrained=path)`` rebuilds the model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.to(dtype) if v.is_floating_point() else v
        for k, v in full_clip_state_dict(module).items()
    }
    create_clip(module.model_name).load_state_dict(state)  # fails here, not at load time
    torch.save(state, path)
    return path


class CLIPPretrainModule(FLYPModule):
    """Train a CLIP from scratch with the CLIP loss on captions of several embedded domains.

    Args:
        classnames: Class names of the concatenated domains (linked from the ``demo-mix``
            DataModule by the CLI); they must be the names of ``domains``, in order.
        templates: Ignored (linked by the CLI); each domain's own templates are used.
        model_name: open_clip architecture trained from random weights.
        domains: Registry names of the domains, in the label-offset order of the data.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps before the cosine decay.
        seed: Seed of the caption sampling (with the global step).
        export_dir: Folder for ``demo-clip.pt`` at fit end; null = the log directory.

    Example:
        >>> names = [name for name, _ in domain_captions(["shapes"])]
        >>> module = CLIPPretrainModule(names, model_name="ldifs-tiny-vit", domains=["shapes"])
        >>> module(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 8])
    """

    # The recipe the shipped weights were trained with decays logit_scale and never clamps it.
    open_clip_logit_scale = False

    def __init__(
        self,
        classnames: Sequence[str],
        templates: Sequence[str] = ("a photo of a {}.",),
        model_name: str = "ldifs-tiny-vit",
        domains: Sequence[str] = DEMO_DOMAINS,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        seed: int = 0,
        export_dir: str | None = None,
    ) -> None:
        captions = domain_captions(domains)
        expected = [name for name, _ in captions]
        if list(classnames) != expected:
            raise ValueError(
                f"classnames ({len(classnames)}) are not those of domains={list(domains)} "
                f"({len(expected)}); pre-train on the 'demo-mix' dataset or list its domains"
            )
        super().__init__(
            classnames,
            templates,
            model_name=model_name,
            pretrained=None,
            loss="contrastive",
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            seed=seed,
        )
        self.export_dir = export_dir
        self.class_templates = [templates for _, templates in captions]

    def captions(self, labels: torch.Tensor) -> list[str]:
        """One caption per label, its template drawn from the label's own domain."""
        generator = self._caption_generator()
        draws = torch.rand(len(labels), generator=generator).tolist()
        out = []
        for label, draw in zip(labels.tolist(), draws, strict=True):
            templates = self.class_templates[label]
            out.append(templates[int(draw * len(templates))].format(self.classnames[label]))
        return out

    def refresh_text_head(self) -> None:
        """Validation head: every class embedded with its own domain's templates."""
        clip, tokenizer = self.text_tower.clip, self.text_tower.tokenizer
        rows = [
            zero_shot_class_embeddings(clip, tokenizer, [name], templates)
            for name, templates in zip(self.classnames, self.class_templates, strict=True)
        ]
        with torch.no_grad():
            self.head.weight.copy_(self.text_tower.logit_scale.exp() * torch.cat(rows))
            self.head.bias.zero_()

    def on_fit_end(self) -> None:
        # trainer.log_dir broadcasts from rank zero: every rank asks before any returns.
        directory = Path(self.export_dir or self.trainer.log_dir or ".")
        if self.trainer.is_global_zero and not getattr(self.trainer, "fast_dev_run", False):
            path = export_clip(self, directory / "demo-clip.pt")
            rank_zero_info(f"pre-trained CLIP written to {path}")
