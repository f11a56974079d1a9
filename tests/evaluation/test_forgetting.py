"""Behaviours of the forgetting measurement pinned against values computed here."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ldifs_lightning import LDIFSModule
from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.evaluation import extract_features, linear_probe_accuracy
from ldifs_lightning.evaluation.forgetting import encoder_accuracies, forgetting_deltas
from ldifs_lightning.evaluation.suite import ForeignDataset, registry_suite
from ldifs_lightning.models import create_clip
from tests.conftest import TINY_VIT, quiet_trainer
from tests.ece_by_hand import ece_by_hand, softmax_rows


def test_suite_means_divide_by_the_number_of_datasets():
    baseline = {"a": {"lp_acc": 80.0, "zs_acc": 50.0}, "b": {"lp_acc": 60.0}, "c": {"lp_acc": 90.0}}
    current = {"a": {"lp_acc": 70.0, "zs_acc": 44.0}, "b": {"lp_acc": 66.0}, "c": {"lp_acc": 81.0}}
    flat = forgetting_deltas(baseline, current)
    assert flat["mean_delta_lp"] == pytest.approx((-10.0 + 6.0 - 9.0) / 3)
    assert flat["mean_delta_zs"] == pytest.approx(-6.0)  # only "a" has zero-shot
    assert flat["b/delta_lp"] == pytest.approx(6.0)


def _separable(n: int, flip: bool, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 4, generator=generator)
    labels = (images[:, 0] > 0).long()
    return TensorDataset(images, 1 - labels if flip else labels)


def test_probe_is_fitted_on_the_train_split_and_scored_on_test():
    # Test labels are the train rule flipped: a probe fitted on train scores near 0 on test,
    # one fitted on test near 100, so using the wrong split cannot pass.
    train, test = _separable(200, False, 0), _separable(60, True, 1)
    encoder = nn.Identity()
    member = ForeignDataset("flip", train, test)
    got = encoder_accuracies(encoder, [member], metrics=["linear_probe"], probe_seed=0)
    train_x, train_y = extract_features(encoder, train)
    test_x, test_y = extract_features(encoder, test)
    expected, _ = linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes=2, seed=0)
    on_test, _ = linear_probe_accuracy(test_x, test_y, test_x, test_y, num_classes=2, seed=0)
    assert got["flip"]["lp_acc"] == pytest.approx(100.0 * expected)
    assert expected < 0.2 < 0.8 < on_test


def test_callback_baseline_is_the_named_pretrained_model_not_the_encoder_at_fit_start(tmp_path):
    data = FineTuneDataModule("shapes", image_size=32, batch_size=16, max_train_samples=32)
    module = LDIFSModule(
        data.classnames, data.templates, model_name=TINY_VIT, pretrained="demo", ldifs_weight=0.0
    )
    with torch.no_grad():  # the encoder at fit start is no longer the pre-trained model
        for parameter in module.image_encoder.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    callback = ConceptForgettingCallback(
        ["shapes"],
        metrics=["linear_probe"],
        max_train_samples=48,
        max_test_samples=32,
        batch_size=16,
        cache_dir=None,
    )
    trainer = quiet_trainer(tmp_path, fast_dev_run=1, callbacks=[callback], logger=False)
    trainer.fit(module, datamodule=data)
    suite = registry_suite(["shapes"], "data", 32, max_train_samples=48, max_test_samples=32)
    pretrained = create_clip(TINY_VIT, "demo").visual
    expected = encoder_accuracies(pretrained, suite, metrics=["linear_probe"], batch_size=16)
    assert callback.baseline == expected


def test_calibration_errors_come_from_the_probe_and_the_scaled_zero_shot_logits():
    train, test = _separable(200, False, 0), _separable(60, False, 1)
    member = ForeignDataset("toy", train, test, classnames=["neg", "pos"], templates=["{}"])
    classes = torch.tensor([[-1.0, 0.3, 0.0, 0.0], [1.0, 0.0, 0.2, 0.0]])
    args = dict(class_embeddings={"toy": classes}, probe_seed=0)
    with_ece = encoder_accuracies(nn.Identity(), [member], zero_shot_scale=20.0, **args)["toy"]
    without = encoder_accuracies(nn.Identity(), [member], **args)["toy"]
    assert "zs_ece" not in without and without["zs_acc"] == with_ece["zs_acc"]
    assert without["lp_acc"] == with_ece["lp_acc"] and without["lp_ece"] == with_ece["lp_ece"]

    train_x, train_y = extract_features(nn.Identity(), train)
    test_x, test_y = extract_features(nn.Identity(), test)
    _, probe = linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes=2, seed=0)
    probe_logits = probe.logits(test_x).tolist()
    expected_lp = ece_by_hand(softmax_rows(probe_logits), test_y.tolist(), bins=15)
    assert with_ece["lp_ece"] == pytest.approx(expected_lp, abs=1e-3)
    cosine = [
        [20.0 * float(torch.dot(x, c) / (x.norm() * c.norm())) for c in classes] for x in test_x
    ]
    expected_zs = ece_by_hand(softmax_rows(cosine), test_y.tolist(), bins=15)
    assert with_ece["zs_ece"] == pytest.approx(expected_zs, abs=1e-3)


def test_zero_shot_scale_must_be_positive():
    member = ForeignDataset("toy", _separable(20, False, 0), _separable(20, False, 1))
    with pytest.raises(ValueError, match=r"zero_shot_scale=0.0 must be a positive finite number"):
        encoder_accuracies(nn.Identity(), [member], metrics=["linear_probe"], zero_shot_scale=0.0)
