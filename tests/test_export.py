import open_clip
import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import LDIFSModule
from ldifs_lightning.cli import main
from ldifs_lightning.export import HEAD_FILE
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT


def _checkpoint(tmp_path, **overrides):
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-2, warmup_steps=1, ldifs_weight=0.0)
    kwargs.update(overrides)
    module = LDIFSModule(CLASSNAMES, TEMPLATES, **kwargs)
    data = DataLoader(
        TensorDataset(torch.randn(12, 3, 32, 32), torch.arange(12) % len(CLASSNAMES)), batch_size=6
    )
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return module.eval(), path


def test_export_round_trips_through_open_clip(tmp_path):
    module, checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "exported"
    main(["export", "--ckpt_path", str(checkpoint), "--output_dir", str(out)])
    clip = open_clip.create_model(f"local-dir:{out}").eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(images), module.image_encoder(images))
    head = torch.load(out / HEAD_FILE, weights_only=True)
    assert head["classnames"] == CLASSNAMES
    torch.testing.assert_close(head["weight"], module.head.weight.detach())


def test_export_keeps_a_trained_text_tower(tmp_path):
    module, checkpoint = _checkpoint(tmp_path, loss="flyp", trainable="both_towers")
    out = tmp_path / "exported"
    main(["export", "--ckpt_path", str(checkpoint), "--output_dir", str(out)])
    clip = open_clip.create_model(f"local-dir:{out}").eval()
    tokens = open_clip.get_tokenizer(TINY_VIT)(["a photo of a circle."])
    with torch.no_grad():
        torch.testing.assert_close(
            clip.encode_text(tokens), module.text_tower.clip.encode_text(tokens)
        )


def test_export_of_a_missing_checkpoint_fails(tmp_path):
    with pytest.raises(ValueError, match=r"ckpt_path='nope.ckpt' is not a file"):
        main(["export", "--ckpt_path", "nope.ckpt", "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
