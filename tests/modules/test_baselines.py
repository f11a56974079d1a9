"""The paper's baselines as compositions of the fine-tuning modules, each checked against a value
computed here."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from open_clip import ClipLoss
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import FineTuneModule, FLYPModule, LDIFSModule
from ldifs_lightning.callbacks import WiSEFTCallback
from ldifs_lightning.data import FineTuneDataModule
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


def test_lpft_head_is_the_probe_fitted_on_training_features(tmp_path):
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=64)
    module = LDIFSModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained=None,
        ldifs_weight=0.0,
        head_init="linear_probe",
    )
    encoder = module.image_encoder
    data.setup("fit")
    encoder.eval()
    with torch.no_grad():
        pairs = [(F.normalize(encoder(x), dim=-1), y) for x, y in data.train_dataloader()]
    features, labels = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    expected = fit_linear_probe(features, labels, num_classes=len(data.classnames), seed=0)
    trainer = quiet_trainer(tmp_path, max_steps=0)
    trainer.fit(module, datamodule=data)
    torch.testing.assert_close(module.head.weight, expected.weight, rtol=1e-4, atol=1e-4)
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
    encoder = module.image_encoder.eval()
    assert next(encoder.parameters()).dtype == torch.bfloat16
    with torch.no_grad():  # what a bf16-true step computes: bf16 images into the bf16 encoder
        pairs = [
            (F.normalize(encoder(x.to(torch.bfloat16)).float(), dim=-1), y)
            for x, y in data.train_dataloader()
        ]
    features, labels = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    expected = fit_linear_probe(features, labels, num_classes=len(data.classnames), seed=0)
    assert bool(module.head_ready)
    torch.testing.assert_close(module.head.weight, expected.weight.to(torch.bfloat16))
    torch.testing.assert_close(module.head.bias, expected.bias.to(torch.bfloat16))


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
    data.train_dataloader = lambda: DataLoader(TensorDataset(torch.zeros(0, 3, 32, 32)))
    with pytest.raises(ValueError, match=r"head_init='linear_probe' \(LP-FT\) needs a training"):
        quiet_trainer(tmp_path).fit(module, datamodule=data)


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
