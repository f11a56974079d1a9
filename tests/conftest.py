"""Shared test set-up: offline, tiny models, few threads."""

import os

# Tests never touch the network: make Hugging Face Hub fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

TINY_VIT = "ldifs-tiny-vit"
TINY_RN = "ldifs-tiny-rn"
CLASSNAMES = ["circle", "square", "triangle"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
