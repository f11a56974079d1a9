import json
import logging
import sys

import pytest
import torch

from ldifs_lightning.models import create_clip, get_tokenizer, register_model_config
from tests.conftest import TINY_VIT, write_hf_tokenizer_config


def test_builds_registered_tiny_model_with_random_init():
    model = create_clip(TINY_VIT, pretrained=None)
    assert model.visual.image_size == (32, 32)
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 32)


def test_local_checkpoint_path_is_loaded(tmp_path):
    source = create_clip(TINY_VIT)
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = create_clip(TINY_VIT, pretrained=str(path))
    for (name, a), (_, b) in zip(
        source.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_register_model_config_from_json(tmp_path):
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 16,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 8,
            "vocab_size": 49408,
            "width": 16,
            "heads": 1,
            "layers": 1,
        },
    }
    path = tmp_path / "my-test-vit.json"
    path.write_text(json.dumps(config))
    assert register_model_config(path) == ["my-test-vit"]
    assert create_clip("my-test-vit").encode_image(torch.randn(1, 3, 16, 16)).shape == (1, 16)


def test_a_hugging_face_tokenizer_without_transformers_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as on a machine without it
    name = write_hf_tokenizer_config(tmp_path)
    with pytest.raises(ValueError) as error:
        get_tokenizer(name)
    assert str(error.value) == (
        "model_name 'ldifs-test-hf-tokenizer' uses a Hugging Face tokenizer, which needs the "
        "transformers package: pip install transformers"
    )
    assert get_tokenizer(TINY_VIT)(["a cat"]).shape == (1, 16)  # open_clip's own tokenizer


def test_register_model_config_rejects_incomplete_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"embed_dim": 16}))
    with pytest.raises(ValueError, match=r"lacks \['text_cfg', 'vision_cfg'\]"):
        register_model_config(path)


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(
        ValueError, match=r"unknown model_name 'ViT-B-33' \(close matches: \[.*'ViT-B-32'"
    ):
        create_clip("ViT-B-33")


def test_unknown_pretrained_tag_lists_tags():
    with pytest.raises(
        ValueError, match=r"pretrained='nope' is neither a file nor a known tag.*openai"
    ):
        create_clip("ViT-B-32", pretrained="nope")


def test_tag_that_needs_a_download_offline_says_what_to_provide(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("ldifs_lightning.models.factory.download_pretrained", offline)
    with pytest.raises(
        ValueError, match=r"needs a download from .* that failed \(OSError\); fetch"
    ):
        create_clip("ViT-B-32", pretrained="openai")


def test_random_init_asked_for_is_not_warned_about_and_the_filter_is_removed(caplog):
    caplog.set_level(logging.WARNING)
    create_clip(TINY_VIT, pretrained=None)
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
    logging.warning("No pretrained weights loaded for model 'x'.")  # outside create_clip
    assert [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
