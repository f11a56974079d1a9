"""Shared test set-up: offline, tiny models, few threads."""

import json
import os
from pathlib import Path

# Tests never touch the network: make Hugging Face Hub fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from lightning.pytorch import Trainer

TINY_VIT = "ldifs-tiny-vit"
TINY_RN = "ldifs-tiny-rn"
CLASSNAMES = ["circle", "square", "triangle"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "ldifs_lightning/models/model_configs"


if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each keeps the cores from being
    # oversubscribed.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def write_hf_tokenizer_config(folder) -> str:
    """Register a tiny model whose text tower names a Hugging Face tokenizer (as SigLIP's do)."""
    from ldifs_lightning.models import register_model_config

    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((MODEL_CONFIGS / f"{TINY_VIT}.json").read_text())
    config["text_cfg"]["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP"
    path = folder / "ldifs-test-hf-tokenizer.json"
    path.write_text(json.dumps(config))
    (name,) = register_model_config(path)
    return name


def quiet_trainer(root, **overrides) -> Trainer:
    """A CPU Trainer for tests: 3 steps, no logger, checkpoints, progress bar or summary."""
    kwargs = dict(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    kwargs.update(overrides)
    return Trainer(**kwargs)
