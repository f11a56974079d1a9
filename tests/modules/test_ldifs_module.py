import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import FineTuneModule, LDIFSModule
from ldifs_lightning.modules.schedule import warmup_cosine_factor
from ldifs_lightning.regularizers import L2SP, TrainingStep
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT, quiet_trainer


def _module(**overrides) -> LDIFSModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-3, warmup_steps=1)
    kwargs.update(overrides)
    return LDIFSModule(CLASSNAMES, TEMPLATES, **kwargs)


def _ldifs_value(module: LDIFSModule, images: torch.Tensor) -> torch.Tensor:
    """The LDIFS term of one training step on ``images`` (the module's first regulariser)."""
    step = TrainingStep(images, torch.zeros(len(images)), module.image_encoder, module.head)
    step.embedding = module.encode_step(step)
    return module.regularizers[0](step)


def _loader(num: int = 16) -> DataLoader:
    images = torch.randn(num, 3, 32, 32)
    labels = torch.arange(num) % len(CLASSNAMES)
    return DataLoader(TensorDataset(images, labels), batch_size=8)


def test_ldifs_term_is_exactly_zero_at_the_first_step():
    module = _module().train()
    assert _ldifs_value(module, torch.randn(4, 3, 32, 32)).item() == 0.0


def test_ldifs_term_is_exactly_zero_at_the_first_step_on_vit_b_32():
    """At 224 px MultiheadAttention feeds its in-projection a transposed input, which matmul runs
    as one mm or as a bmm depending on requires_grad; both encoders must take the same kernels."""
    torch.manual_seed(0)
    module = _module(model_name="ViT-B-32").train()
    assert _ldifs_value(module, torch.randn(2, 3, 224, 224)).item() == 0.0
    assert all(not p.requires_grad for p in module.reference_encoder.parameters())


def test_training_makes_ldifs_positive_and_leaves_frozen_copy_untouched(tmp_path):
    module = _module()
    frozen_before = {k: v.clone() for k, v in module.reference_encoder.state_dict().items()}
    trainable_before = {k: v.clone() for k, v in module.image_encoder.state_dict().items()}
    trainer = quiet_trainer(tmp_path)
    trainer.fit(module, _loader(), _loader(8))

    for name, value in module.reference_encoder.state_dict().items():
        assert torch.equal(value, frozen_before[name]), name
    assert any(
        not torch.equal(value, trainable_before[name])
        for name, value in module.image_encoder.state_dict().items()
    )
    assert not module.reference_encoder.training
    assert all(not p.requires_grad for p in module.reference_encoder.parameters())
    assert _ldifs_value(module.train(), torch.randn(4, 3, 32, 32)).item() > 0


def test_optimizer_holds_no_frozen_parameter(tmp_path):
    module = _module()
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(module, _loader())
    in_optimizer = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in module.reference_encoder.parameters()}
    assert in_optimizer == {id(p) for p in module.image_encoder.parameters()} | {
        id(p) for p in module.head.parameters()
    }


def test_frozen_copy_stays_in_eval_mode():
    module = _module()
    module.train()
    assert module.image_encoder.training and not module.reference_encoder.training


def test_zero_weight_never_runs_a_frozen_copy(tmp_path, monkeypatch):
    module = _module(ldifs_weight=0.0)
    assert module.reference_encoder is None
    calls = []
    monkeypatch.setattr(
        "ldifs_lightning.regularizers.ldifs.ldifs_distance", lambda *a, **k: calls.append(a)
    )
    quiet_trainer(tmp_path, max_steps=2).fit(module, _loader())
    assert calls == []


def test_loss_is_cross_entropy_plus_weighted_distance():
    module = _module(ldifs_weight=3.0)
    with torch.no_grad():  # move the encoder away from the copy so the distance is non-zero
        for p in module.image_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.detach())
    loss = module.training_step((images, labels), 0)
    assert logged["train/ldifs"] > 0
    expected = logged["train/ce"] + 3.0 * logged["train/ldifs"]
    torch.testing.assert_close(loss.detach(), expected)


@pytest.mark.parametrize(
    ("weights", "regulariser"),
    [
        ({"ldifs_weight": 0.0}, None),
        ({"ldifs_weight": 2.0}, "train/ldifs"),
        ({"ldifs_weight": 0.0, "regularizers": [L2SP(weight=0.5)]}, "train/l2sp"),
    ],
)
def test_only_the_active_regulariser_is_logged(tmp_path, weights, regulariser):
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(_module(**weights), _loader(8))
    logged = {name for name in trainer.callback_metrics if name.startswith("train/")}
    expected = {"train/loss", "train/task_loss", "train/ce"}
    assert logged == (expected if regulariser is None else expected | {regulariser})


def test_trainable_encoder_runs_once_per_step(monkeypatch):
    module = _module()
    module.log = lambda *args, **kwargs: None  # no Trainer attached: nothing to log to
    calls = []
    module.image_encoder.register_forward_hook(lambda *args: calls.append("trainable"))
    module.reference_encoder.register_forward_hook(lambda *args: calls.append("frozen"))
    module.training_step((torch.randn(2, 3, 32, 32), torch.tensor([0, 1])), 0)
    assert sorted(calls) == ["frozen", "trainable"]


def _fit_recording_warnings(tmp_path, module) -> tuple[list[str], bool]:
    """The eval-mode warnings of one fit, and whether the fit left the warning filters as it
    found them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        quiet_trainer(tmp_path, max_steps=1).fit(module, _loader(8))
        restored = warnings.filters == before
    messages = [str(w.message) for w in caught if "in eval mode at the start" in str(w.message)]
    return messages, restored


@pytest.mark.parametrize(
    "build",
    [
        lambda: _module(),
        lambda: _module(ldifs_weight=0.0, regularizers=[L2SP(weight=0.5)]),
        lambda: FineTuneModule(
            CLASSNAMES, TEMPLATES, model_name=TINY_VIT, pretrained=None, freeze_encoder=True
        ),
    ],
    ids=["ldifs", "l2sp", "linear_probing"],
)
def test_intended_eval_mode_modules_do_not_warn(tmp_path, build):
    messages, restored = _fit_recording_warnings(tmp_path, build())
    assert messages == []
    assert restored  # the filter lived only for the fit loop's check


def test_another_module_in_eval_mode_still_warns(tmp_path):
    module = _module()
    frozen = len(list(module.regularizers[0].reference.modules()))  # the copy and its wrapper
    module.user_part = nn.Linear(2, 2).eval()  # not ours: Lightning must still say so
    messages, restored = _fit_recording_warnings(tmp_path, module)
    assert messages == [
        f"Found {frozen + 1} module(s) in eval mode at the start of training. This may lead to "
        "unexpected behavior during training. If this is intentional, you can ignore this warning."
    ]
    assert restored


def test_bf16_mixed_runs_the_frozen_copy_under_the_same_autocast(tmp_path, monkeypatch):
    from ldifs_lightning.regularizers import ldifs as ldifs_regularizer

    seen = []
    real = ldifs_regularizer.ldifs_distance

    def spy(features, reference, normalize, **options):
        seen.append(({f.dtype for f in features}, {r.dtype for r in reference}))
        return real(features, reference, normalize, **options)

    monkeypatch.setattr(ldifs_regularizer, "ldifs_distance", spy)
    module = _module()
    quiet_trainer(tmp_path, max_steps=1, precision="bf16-mixed").fit(module, _loader())
    assert seen == [({torch.bfloat16}, {torch.bfloat16})]


def test_warmup_cosine_schedule():
    assert warmup_cosine_factor(0, warmup_steps=4, total_steps=12) == pytest.approx(0.25)
    assert warmup_cosine_factor(3, warmup_steps=4, total_steps=12) == pytest.approx(1.0)
    assert warmup_cosine_factor(8, warmup_steps=4, total_steps=12) == pytest.approx(0.5)
    assert warmup_cosine_factor(12, warmup_steps=4, total_steps=12) == pytest.approx(0.0)


def test_checkpoint_loads_offline_with_weights_only(tmp_path):
    clip_path = tmp_path / "weights.pt"
    from ldifs_lightning.models import create_clip

    torch.save(create_clip(TINY_VIT).state_dict(), clip_path)
    module = _module(pretrained=str(clip_path), checkpoint_reference="always")
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(module, _loader())
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)
    clip_path.unlink()  # the pre-trained weights are gone: everything must come from the ckpt

    torch.load(checkpoint, weights_only=True)  # plain state_dicts and hyper-parameters only
    loaded = LDIFSModule.load_from_checkpoint(checkpoint)
    for name, value in module.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(images), module.eval()(images))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ldifs_weight": -1.0}, r"ldifs_weight=-1.0 must be >= 0"),
        ({"normalize": "l2"}, r"normalize='l2' is not one of \['token', 'channel', 'none'\]"),
        ({"taps": ["nope"]}, r"tap 'nope' is not a module of VisionTransformer; valid names"),
        ({"model_name": "tiny-vit"}, r"unknown model_name 'tiny-vit' \(close matches"),
        ({"lr": 0.0}, r"need lr > 0"),
    ],
)
def test_bad_arguments_fail_at_construction(overrides, message):
    with pytest.raises(ValueError, match=message):
        _module(**overrides)


def test_empty_classnames_fail():
    with pytest.raises(ValueError, match="classnames is empty"):
        LDIFSModule([], model_name=TINY_VIT, pretrained=None)


def test_class_count_mismatch_with_the_data_fails_before_training(tmp_path):
    from ldifs_lightning.data import FineTuneDataModule

    data = FineTuneDataModule("shapes", image_size=32, batch_size=8, max_train_samples=8)
    module = _module()  # 3 class names, shapes has 8 classes
    with pytest.raises(ValueError, match="the data has 8 classes but the module got 3 class names"):
        quiet_trainer(tmp_path).fit(module, datamodule=data)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_quick_gelu_weights_loads_with_quick_gelu(tmp_path, monkeypatch):
    # As for pretrained="openai": the tag says QuickGELU, which the loaded architecture must keep.
    from open_clip.transformer import QuickGELU

    monkeypatch.setattr(
        "ldifs_lightning.modules.fine_tuner.uses_quick_gelu", lambda name, pretrained: True
    )
    module = _module()
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(module, _loader())
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = LDIFSModule.load_from_checkpoint(tmp_path / "model.ckpt")
    activations = {type(m) for m in loaded.image_encoder.modules()}
    assert QuickGELU in activations
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(images), module.eval()(images))
