"""WiSEFTCallback under low-precision-true training and without pre-trained weights."""

import pytest
import torch

from ldifs_lightning import LDIFSModule
from ldifs_lightning.callbacks import WiSEFTCallback
from ldifs_lightning.data import FineTuneDataModule
from tests.conftest import TINY_VIT, quiet_trainer

VAL_SAMPLES = 64


def _data() -> FineTuneDataModule:
    return FineTuneDataModule(
        "shapes", image_size=32, batch_size=16, max_train_samples=32, max_val_samples=VAL_SAMPLES
    )


def _module(data: FineTuneDataModule, **overrides) -> LDIFSModule:
    kwargs = dict(model_name=TINY_VIT, pretrained="demo", lr=1e-2, warmup_steps=1)
    kwargs.update(overrides)
    return LDIFSModule(data.classnames, data.templates, **kwargs)


def _val_acc(module: LDIFSModule, data: FineTuneDataModule, root) -> float:
    """The whole val split's accuracy in %, measured by Lightning's own bf16-true validation."""
    trainer = quiet_trainer(root, precision="bf16-true")
    trainer.validate(module, datamodule=data, verbose=False)
    return trainer.callback_metrics["val/acc"].item() * 100


# ldifs_weight 0 takes the pre-trained encoder from open_clip (float32, cast to the fine-tuned
# dtype); > 0 takes the module's frozen copy (already bf16).
@pytest.mark.parametrize("ldifs_weight", [0.0, 1.0])
def test_bf16_true_fit_measures_both_endpoints(tmp_path, ldifs_weight):
    data = _data()
    module = _module(data, ldifs_weight=ldifs_weight)
    callback = WiSEFTCallback(alphas=[0.0, 1.0])
    trainer = quiet_trainer(
        tmp_path, max_steps=2, precision="bf16-true", callbacks=[callback], limit_val_batches=1
    )
    trainer.fit(module, datamodule=data)
    assert module.head.weight.dtype == torch.bfloat16  # the run really was bf16-true

    pretrained_acc = _val_acc(_module(data, ldifs_weight=ldifs_weight), data, tmp_path / "pre")
    finetuned_acc = _val_acc(module, data, tmp_path / "post")
    assert [row["alpha"] for row in callback.rows] == [0.0, 1.0]
    # The callback evaluates the head in float32 and Lightning's validation in bf16, so a sample
    # whose top two logits are within bf16 rounding may flip: allow one sample either way.
    one_sample = 100.0 / VAL_SAMPLES
    assert callback.rows[0]["task_acc"] == pytest.approx(pretrained_acc, abs=one_sample + 1e-9)
    assert callback.rows[1]["task_acc"] == pytest.approx(finetuned_acc, abs=one_sample + 1e-9)


def test_random_init_is_refused_before_training(tmp_path):
    data = _data()
    module = _module(data, pretrained=None, ldifs_weight=0.0)
    steps = []
    module.training_step = lambda *args: steps.append(args)
    trainer = quiet_trainer(tmp_path, callbacks=[WiSEFTCallback(alphas=[0.0, 1.0])])
    with pytest.raises(ValueError, match=r"pretrained=None .*set the module's pretrained"):
        trainer.fit(module, datamodule=data)
    assert steps == []
    assert not (tmp_path / "wiseft.csv").exists()


def test_validate_with_random_init_is_allowed(tmp_path):
    # WiSE-FT only acts at fit end: a validate-only run of the same config must not be refused.
    data = _data()
    module = _module(data, pretrained=None, ldifs_weight=0.0)
    trainer = quiet_trainer(tmp_path, callbacks=[WiSEFTCallback(alphas=[0.0, 1.0])])
    trainer.validate(module, datamodule=data, verbose=False)
    assert "val/acc" in trainer.callback_metrics
