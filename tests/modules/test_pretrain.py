"""Contrastive pre-training module, its export, and the shipped demo CLIP (`pretrained: demo`)."""

import json
import shutil

import open_clip
import pytest
import torch
from lightning.pytorch import Trainer

from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.models import create_clip
from ldifs_lightning.modules.pretrain import CLIPPretrainModule, domain_captions, export_clip
from ldifs_lightning.pretrained import (
    DEMO_MODEL_NAME,
    DEMO_WEIGHTS,
    HERE,
    ShippedFileError,
    sha256_of,
    verify_shipped_file,
)
from ldifs_lightning.pretrained.build import CARD, measure_card

SHAPES = [name for name, _ in domain_captions(["shapes"])]


def _module(**kwargs) -> CLIPPretrainModule:
    return CLIPPretrainModule(SHAPES, domains=["shapes"], warmup_steps=2, **kwargs)


def test_captions_use_each_domain_templates():
    module = CLIPPretrainModule(
        [name for name, _ in domain_captions(["digits", "textures"])],
        domains=["digits", "textures"],
    )
    captions = module.captions(torch.tensor([3, 10, 17]))
    assert "three" in captions[0]
    assert "horizontal stripes" in captions[1] and "zigzag" in captions[2]


def test_classnames_must_match_the_domains():
    with pytest.raises(ValueError, match="demo-mix"):
        CLIPPretrainModule(["circle", "square"], domains=["shapes"])


def test_trains_both_towers_and_exports_a_loadable_clip(tmp_path):
    module = _module(export_dir=str(tmp_path))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=48)
    trainer = Trainer(
        max_steps=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    after = module.state_dict()
    assert not torch.equal(
        before["image_encoder.conv1.weight"], after["image_encoder.conv1.weight"]
    )
    text_key = "text_tower.clip.token_embedding.weight"
    assert not torch.equal(before[text_key], after[text_key])
    path = tmp_path / "demo-clip.pt"
    assert path.is_file()  # written at fit end
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    clip = create_clip("ldifs-tiny-vit", str(path)).eval()
    module.eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(clip.visual(images), module.image_encoder(images), atol=2e-2)
    export_clip(module, tmp_path / "again.pt")


def test_shipped_weights_match_checksum_and_size():
    assert verify_shipped_file(DEMO_WEIGHTS) == DEMO_WEIGHTS
    assert DEMO_WEIGHTS.stat().st_size <= 10 * 2**20
    card = json.loads(CARD.read_text())
    assert card["sha256"] == sha256_of(DEMO_WEIGHTS)
    assert (HERE / "MODEL_CARD.md").is_file()


def test_pretrained_demo_loads_for_its_model_only():
    clip = create_clip(DEMO_MODEL_NAME, "demo")
    assert clip.visual.image_size == (32, 32)
    with pytest.raises(ValueError, match="model_name: ldifs-tiny-vit") as error:
        create_clip("ldifs-tiny-rn", "demo")
    assert "\n" not in str(error.value)


def test_corrupt_demo_weights_say_reinstall(tmp_path, monkeypatch):
    import ldifs_lightning.pretrained as pretrained

    shutil.copy(HERE / "SHA256SUMS", tmp_path / "SHA256SUMS")
    corrupt = tmp_path / DEMO_WEIGHTS.name
    corrupt.write_bytes(DEMO_WEIGHTS.read_bytes()[:-10])
    monkeypatch.setattr(pretrained, "DEMO_WEIGHTS", corrupt)
    with pytest.raises(ShippedFileError, match="reinstall"):
        create_clip(DEMO_MODEL_NAME, "demo")
    corrupt.unlink()
    with pytest.raises(ShippedFileError, match=r"missing.*reinstall"):
        create_clip(DEMO_MODEL_NAME, "demo")


def test_shipped_model_reproduces_its_card_zero_shot_accuracies():
    card = json.loads(CARD.read_text())["accuracy"]
    measured = measure_card(metrics=("zero_shot",))
    for domain, row in card.items():
        assert measured[domain]["zs_acc"] == pytest.approx(row["zs_acc"], abs=1.0), domain


def _fit_one_step_and_save(path) -> CLIPPretrainModule:
    """A pre-training module after one step on `shapes`, its checkpoint written to ``path``."""
    module = _module()
    data = FineTuneDataModule("shapes", image_size=32, batch_size=8, max_train_samples=16)
    trainer = Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=path.parent,
    )
    trainer.fit(module, data)
    trainer.save_checkpoint(path)
    return module


def test_checkpoint_loads_back(tmp_path):
    module = _fit_one_step_and_save(tmp_path / "last.ckpt")
    loaded = CLIPPretrainModule.load_from_checkpoint(tmp_path / "last.ckpt")
    images = torch.randn(2, 3, 32, 32)
    module.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.image_encoder(images), module.image_encoder(images))
    assert loaded.hparams.domains == ["shapes"]


def test_checkpoint_exports_through_the_generic_loader(tmp_path):
    """`ldifs export` loads any fine-tuner's checkpoint: the pre-training module has no
    `pretrained` argument, and CLIPFineTuner.load_from_checkpoint must still find its class."""
    from ldifs_lightning.export import export_model
    from ldifs_lightning.modules import CLIPFineTuner

    module = _fit_one_step_and_save(tmp_path / "last.ckpt")
    assert isinstance(
        CLIPFineTuner.load_from_checkpoint(tmp_path / "last.ckpt"), CLIPPretrainModule
    )
    export_model(str(tmp_path / "exported"), ckpt_path=str(tmp_path / "last.ckpt"))
    clip = open_clip.create_model(f"local-dir:{tmp_path / 'exported'}").eval()
    images = torch.randn(2, 3, 32, 32)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(images), module.image_encoder(images))
