"""The paper's baselines as compositions of the fine-tuning modules, each checked against a value
computed here."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from open_clip import ClipLoss
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import FineTuneModule, FLYPModule, LDIFSModule
from ldifs_lightning.callbacks import WiSEFTCallback
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.data.transforms import eval_transform, train_transform
from ldifs_lightning.evaluation.linear_probe import fit_linear_probe
from ldifs_lightning.models.text_tower import sample_captions
from ldifs_lightning.regularizers import L2SP, LDIFS
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_RN, TINY_VIT, quiet_trainer


def _module(**overrides) -> LDIFSModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-3, warmup_steps=1, ldifs_weight=0.0)
    kwargs.update(overrides)
    return LDIFSModule(CLASSNAMES, TEMPLATES, **kwargs)


def _finetune(**overrides) -> FineTuneModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-3, warmup_steps=1)
    kwargs.update(overrides)
    return FineTuneModule(CLASSNAMES, TEMPLATES, **kwargs)


def _flyp(**overrides) -> FLYPModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-3, warmup_steps=1)
    kwargs.update(overrides)
    return FLYPModule(CLASSNAMES, TEMPLATES, **kwargs)


def _batch(n: int = 6):
    return torch.randn(n, 3, 32, 32), torch.arange(n) % len(CLASSNAMES)


def _capture_logs(module):
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.detach())
    return logged


def test_l2sp_term_equals_sum_of_squared_differences_and_runs_no_frozen_forward():
    module = _finetune(regularizers=[L2SP(weight=0.5)])
    with torch.no_grad():
        for p in module.image_encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    expected = sum(
        ((p - p0) ** 2).sum()
        for p, p0 in zip(
            module.image_encoder.parameters(), module.reference_encoder.parameters(), strict=True
        )
    )
    calls = []
    module.reference_encoder.register_forward_hook(lambda *a: calls.append(1))
    logged = _capture_logs(module)
    loss = module.training_step(_batch(), 0)
    torch.testing.assert_close(logged["train/l2sp"], expected.detach())
    torch.testing.assert_close(loss.detach(), logged["train/ce"] + 0.5 * expected.detach())
    assert calls == []


def test_label_smoothing_matches_torch_cross_entropy():
    module = _module(label_smoothing=0.1)
    images, labels = _batch()
    logged = _capture_logs(module)
    module.training_step((images, labels), 0)
    expected = F.cross_entropy(module(images), labels, label_smoothing=0.1)
    torch.testing.assert_close(logged["train/ce"], expected.detach())


def test_flyp_loss_equals_open_clip_clip_loss():
    module = _flyp()
    images, labels = _batch()
    logged = _capture_logs(module)
    module.training_step((images, labels), 0)
    generator = torch.Generator().manual_seed(0)  # seed 0, global step 0
    captions = sample_captions(CLASSNAMES, TEMPLATES, labels, generator)
    image = F.normalize(module.image_encoder(images), dim=-1)
    text = module.text_tower.encode(captions)
    expected = ClipLoss()(image, text, module.text_tower.logit_scale.exp())
    torch.testing.assert_close(logged["train/task_loss"], expected.detach())


def test_flyp_ce_is_cross_entropy_over_one_caption_per_class():
    module = _flyp(loss="cross_entropy")
    images, labels = _batch()
    logged = _capture_logs(module)
    module.training_step((images, labels), 0)
    generator = torch.Generator().manual_seed(0)
    captions = sample_captions(CLASSNAMES, TEMPLATES, torch.arange(3), generator)
    image = F.normalize(module.image_encoder(images), dim=-1)
    text = module.text_tower.encode(captions)
    logits = module.text_tower.logit_scale.exp() * image @ text.T
    torch.testing.assert_close(logged["train/task_loss"], F.cross_entropy(logits, labels).detach())


def test_flyp_trains_text_tower_and_evaluates_with_it(tmp_path):
    module = _flyp()
    text_before = {k: v.clone() for k, v in module.text_tower.state_dict().items()}
    data = DataLoader(TensorDataset(*_batch(12)), batch_size=6)
    quiet_trainer(tmp_path, max_steps=-1, max_epochs=1).fit(
        module, data, data
    )  # val after the last step
    changed = [
        k for k, v in module.text_tower.state_dict().items() if not torch.equal(v, text_before[k])
    ]
    assert changed
    embeddings = module.text_tower.class_embeddings(CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(module.head.weight, module.text_tower.logit_scale.exp() * embeddings)


def test_linear_probing_trains_only_the_head(tmp_path):
    module = _finetune(freeze_encoder=True)
    encoder_before = {k: v.clone() for k, v in module.image_encoder.state_dict().items()}
    head_before = module.head.weight.clone()
    data = DataLoader(TensorDataset(*_batch(12)), batch_size=6)
    quiet_trainer(tmp_path).fit(module, data)
    for name, value in module.image_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name
    assert not torch.equal(module.head.weight, head_before)


def _features(encoder, dataset, transform, dtype=torch.float32):
    """l2-normalised features of ``dataset``'s PIL images under ``transform``, written out here."""
    encoder.eval()
    images = torch.stack([transform(image) for image, _ in dataset])
    labels = torch.tensor([label for _, label in dataset])
    with torch.no_grad():
        features = torch.cat([encoder(batch.to(dtype)).float() for batch in images.split(16)])
    return F.normalize(features, dim=-1), labels


def test_lpft_head_is_the_probe_fitted_on_eval_transform_features_of_the_fit_split(tmp_path):
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=64)
    module = LDIFSModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained=None,
        ldifs_weight=0.0,
        head_init="linear_probe",
    )
    data.setup("fit")
    features, labels = _features(module.image_encoder, data.train_set, eval_transform(32))
    expected = fit_linear_probe(features, labels, num_classes=len(data.classnames), seed=0)
    # What the head would be if it were fitted on the augmented training images instead.
    augmented, _ = _features(module.image_encoder, data.train_set, train_transform(32))
    on_augmented = fit_linear_probe(augmented, labels, num_classes=len(data.classnames), seed=0)
    trainer = quiet_trainer(tmp_path, max_steps=0)
    trainer.fit(module, datamodule=data)
    torch.testing.assert_close(module.head.weight, expected.weight, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(module.head.bias, expected.bias, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(module.head.weight, on_augmented.weight, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(module.initial_head_weight, module.head.weight)
    assert bool(module.head_ready)


def test_lpft_under_bf16_true_fits_the_probe_on_bf16_features(tmp_path):
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=64)
    module = LDIFSModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained="demo",
        ldifs_weight=0.0,
        head_init="linear_probe",
    )
    trainer = quiet_trainer(tmp_path, max_steps=0, precision="bf16-true")
    trainer.fit(module, datamodule=data)
    encoder = module.image_encoder
    assert next(encoder.parameters()).dtype == torch.bfloat16
    # What a bf16-true step computes: bf16 images (eval transform) into the bf16 encoder.
    features, labels = _features(encoder, data.train_set, eval_transform(32), torch.bfloat16)
    expected = fit_linear_probe(features, labels, num_classes=len(data.classnames), seed=0)
    assert bool(module.head_ready)
    torch.testing.assert_close(module.head.weight, expected.weight.to(torch.bfloat16))
    torch.testing.assert_close(module.head.bias, expected.bias.to(torch.bfloat16))


def test_lp_is_the_probe_alone_and_its_test_accuracy_is_the_probes(tmp_path):
    """LP: one probe fit, no optimizer, no step; test accuracy = the probe's on test features."""
    data = FineTuneDataModule(
        "shapes", image_size=32, batch_size=16, max_train_samples=96, max_test_samples=96
    )
    module = FineTuneModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained="demo",
        freeze_encoder=True,
        head_init="linear_probe",
    )
    assert module.probe_only
    encoder_before = {k: v.clone() for k, v in module.image_encoder.state_dict().items()}
    trainer = quiet_trainer(tmp_path, max_steps=-1, max_epochs=3)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 0 and module.configure_optimizers() is None
    torch.testing.assert_close(module.head.weight, module.initial_head_weight)
    for name, value in module.image_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name
    tested = trainer.test(module, datamodule=data, verbose=False)[0]["test/acc"]

    data.setup("test")
    encoder = module.image_encoder
    train_features, train_labels = _features(encoder, data.train_set, eval_transform(32))
    probe = fit_linear_probe(train_features, train_labels, num_classes=len(data.classnames), seed=0)
    test_features, test_labels = _features(encoder, data.test_set, eval_transform(32))
    accuracy = (probe.predict(test_features) == test_labels).float().mean().item()
    assert 0.3 < accuracy < 1.0  # a probe that learnt something, not a degenerate case
    assert tested == pytest.approx(accuracy, abs=1e-6)


def test_flyp_loss_follows_the_current_trainers_world_size_and_rank(tmp_path, monkeypatch):
    """A module reused in a second fit gathers over that fit's processes.

    No real DDP here: the second "fit" is a stand-in trainer reporting world size 2, rank 1, and
    open_clip's feature gather is replaced by one that puts another rank's features next to
    ours. This proves the loss is built from the current trainer's world size and rank and uses
    the gathered features; it does not exercise torch.distributed itself.
    """
    module = _flyp()
    data = DataLoader(TensorDataset(*_batch(12)), batch_size=6)
    quiet_trainer(tmp_path, max_steps=1).fit(module, data)  # first fit: one process

    gathered = []
    other_image = F.normalize(torch.randn(6, module.head.in_features), dim=-1)
    other_text = F.normalize(torch.randn(6, module.head.in_features), dim=-1)

    def gather(image, text, *, rank, world_size, **kwargs):
        gathered.append((rank, world_size))
        return torch.cat([other_image, image]), torch.cat([other_text, text])  # rank 1 is second

    monkeypatch.setattr("open_clip.loss.gather_features", gather)
    module.trainer = SimpleNamespace(world_size=2, global_rank=1, global_step=0)
    images, labels = _batch()
    with torch.no_grad():
        embedding = module.image_encoder(images)
        loss, _ = module.task_loss(embedding, labels)

        captions = sample_captions(CLASSNAMES, TEMPLATES, labels, torch.Generator().manual_seed(0))
        all_image = torch.cat([other_image, F.normalize(embedding, dim=-1)])
        all_text = torch.cat([other_text, module.text_tower.encode(captions)])
        logits = module.text_tower.logit_scale.exp() * all_image @ all_text.T
        targets = torch.arange(12)
        expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    assert gathered == [(1, 2)]
    torch.testing.assert_close(loss, expected)


def test_wiseft_callback_endpoints_and_report(tmp_path):
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=32)
    module = LDIFSModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained="demo",  # WiSE-FT refuses a random init: nothing pre-trained to go back to
        ldifs_weight=1.0,
        lr=1e-2,
        warmup_steps=1,
    )
    callback = WiSEFTCallback(alphas=[0.0, 0.5, 1.0])
    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[callback], limit_val_batches=2)
    trainer.fit(module, datamodule=data)
    full_val = quiet_trainer(tmp_path / "val")  # the whole val split, as the callback uses
    full_val.validate(module, datamodule=data, verbose=False)
    final = full_val.callback_metrics["val/acc"].item() * 100
    assert [row["alpha"] for row in callback.rows] == [0.0, 0.5, 1.0]
    assert callback.rows[2]["task_acc"] == pytest.approx(final, abs=1e-6)
    assert (tmp_path / "wiseft.csv").is_file() and (tmp_path / "wiseft.png").is_file()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: _finetune(freeze_encoder=True, regularizers=[L2SP(weight=0.5)]),
            r"freeze_encoder=True \(linear probing\) keeps the encoder fixed, so the "
            r"regularisers \['L2SP'\] have nothing to do",
        ),
        (lambda: _finetune(label_smoothing=1.0), r"label_smoothing=1.0 must be in \[0, 1\)"),
        (lambda: _finetune(head_init="probe"), r"head_init='probe' is not one of"),
        (
            lambda: _flyp(loss="flyp"),
            r"loss='flyp' is not one of \['contrastive', 'cross_entropy'\]",
        ),
        (lambda: L2SP(weight=-1.0), r"L2SP: weight=-1.0 must be >= 0"),
        (
            lambda: _finetune(regularizers=[{"class_path": "torch.nn.Linear"}]),
            r"class_path 'torch.nn.Linear' is not a subclass of .*Regularizer",
        ),
        (
            lambda: _finetune(regularizers=[{"class_path": "no.such.Term"}]),
            r"class_path 'no.such.Term' does not name an importable class",
        ),
    ],
)
def test_bad_combinations(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_flyp_without_templates_fails():
    with pytest.raises(ValueError, match="templates is empty"):
        FLYPModule(CLASSNAMES, [], model_name=TINY_VIT, pretrained=None)


def test_ldifs_and_l2sp_compose_into_one_loss():
    """Both terms at once: the loss is CE + 2 x LDIFS + 0.5 x L2SP, each logged on its own."""
    module = _finetune(regularizers=[LDIFS(weight=2.0), L2SP(weight=0.5)])
    with torch.no_grad():
        for p in module.image_encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    logged = _capture_logs(module)
    loss = module.training_step(_batch(), 0)
    assert logged["train/ldifs"] > 0 and logged["train/l2sp"] > 0
    expected = logged["train/ce"] + 2.0 * logged["train/ldifs"] + 0.5 * logged["train/l2sp"]
    torch.testing.assert_close(loss.detach(), expected)


def test_wise_alpha_outside_unit_interval_fails():
    with pytest.raises(ValueError, match=r"alpha=-0.1 must be in \[0, 1\]"):
        WiSEFTCallback(alphas=[-0.1, 1.0])


def test_lpft_without_a_training_split_fails(tmp_path):
    data = FineTuneDataModule("shapes", image_size=32)
    module = LDIFSModule(
        data.classnames,
        model_name=TINY_VIT,
        pretrained=None,
        ldifs_weight=0.0,
        head_init="linear_probe",
    )
    data.fit_eval_dataloader = lambda: DataLoader(TensorDataset(torch.zeros(0, 3, 32, 32)))
    with pytest.raises(
        ValueError, match=r"head_init='linear_probe' \(LP, LP-FT\) needs a training split, but "
    ):
        quiet_trainer(tmp_path).fit(module, datamodule=data)


class _TrainOnly(LightningDataModule):
    """A DataModule with a training loader and no ``fit_eval_dataloader``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.data = TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=4)


def test_probe_head_from_a_datamodule_without_fit_eval_loader_uses_its_training_items(tmp_path):
    images, labels = torch.randn(24, 3, 32, 32), torch.arange(24) % len(CLASSNAMES)
    module = _finetune(head_init="linear_probe")
    with torch.no_grad():
        features = F.normalize(module.image_encoder.eval()(images), dim=-1)
    expected = fit_linear_probe(features, labels, num_classes=len(CLASSNAMES), seed=0)
    with pytest.warns(UserWarning, match=r"_TrainOnly has no fit_eval_dataloader\(\)"):
        quiet_trainer(tmp_path, max_steps=0).fit(module, datamodule=_TrainOnly(images, labels))
    torch.testing.assert_close(module.head.weight, expected.weight, rtol=1e-4, atol=1e-4)


def test_evaluating_before_the_probe_is_fitted_warns(tmp_path):
    module = _finetune(freeze_encoder=True, head_init="linear_probe")
    data = DataLoader(TensorDataset(*_batch(6)), batch_size=6)
    with pytest.warns(UserWarning, match=r"testing with head_init='linear_probe' before the probe"):
        quiet_trainer(tmp_path).test(module, data, verbose=False)


def test_flyp_logit_scale_is_clamped_at_ln_100_after_a_step(tmp_path):
    module = _flyp()
    with torch.no_grad():
        module.text_tower.logit_scale.fill_(6.0)  # above ln 100; one AdamW step moves it <= lr
    data = DataLoader(TensorDataset(*_batch(6)), batch_size=6)
    quiet_trainer(tmp_path, max_steps=1).fit(module, data)
    assert module.text_tower.logit_scale.item() == pytest.approx(math.log(100), abs=1e-6)


def test_flyp_logit_scale_has_no_weight_decay_and_everything_else_has(tmp_path):
    module = _flyp(weight_decay=0.2)
    data = DataLoader(TensorDataset(*_batch(6)), batch_size=6)
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(module, data)
    scale = module.text_tower.logit_scale
    groups = trainer.optimizers[0].param_groups
    [scale_group] = [g for g in groups if any(p is scale for p in g["params"])]
    assert scale_group["weight_decay"] == 0.0 and len(scale_group["params"]) == 1
    others = [p for g in groups if g is not scale_group for p in g["params"]]
    assert all(g["weight_decay"] == 0.2 for g in groups if g is not scale_group)
    trainable = [p for p in module.parameters() if p.requires_grad and p is not scale]
    assert {id(p) for p in others} == {id(p) for p in trainable}
    assert len(others) == len(trainable)


def test_cross_entropy_optimizer_is_one_adamw_group_over_the_trainable_parameters(tmp_path):
    module = _finetune(regularizers=[L2SP(weight=0.5)])
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(module, DataLoader(TensorDataset(*_batch(6)), batch_size=6))
    [group] = trainer.optimizers[0].param_groups
    assert group["weight_decay"] == 0.1
    assert [id(p) for p in group["params"]] == [id(p) for p in module.trainable_parameters()]


def test_linear_probing_keeps_batchnorm_statistics_fixed(tmp_path):
    module = FineTuneModule(
        CLASSNAMES,
        TEMPLATES,
        model_name=TINY_RN,
        pretrained=None,
        freeze_encoder=True,
        lr=1e-2,
        warmup_steps=1,
    )
    before = {k: v.clone() for k, v in module.image_encoder.state_dict().items()}
    data = DataLoader(TensorDataset(*_batch(12)), batch_size=6)
    quiet_trainer(tmp_path).fit(module, data)
    assert not module.image_encoder.training
    for name, value in module.image_encoder.state_dict().items():
        assert torch.equal(value, before[name]), name  # running means included
