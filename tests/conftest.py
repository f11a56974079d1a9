"""Shared test set-up: offline, tiny models, few threads."""

import os

# Tests never touch the network: make Hugging Face Hub fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from lightning.pytorch import Trainer

TINY_VIT = "ldifs-tiny-vit"
TINY_RN = "ldifs-tiny-rn"
CLASSNAMES = ["circle", "square", "triangle"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each keeps the cores from being
    # oversubscribed.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


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
