"""Behaviours pinned before the module was restructured: each fails when the behaviour breaks."""

import math

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import LDIFSModule
from ldifs_lightning.models import FeatureTaps, default_tap_names
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT, quiet_trainer


def _module(**overrides) -> LDIFSModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-3, warmup_steps=1)
    kwargs.update(overrides)
    return LDIFSModule(CLASSNAMES, TEMPLATES, **kwargs)


def _encoder_grads(module: LDIFSModule, batch) -> dict[str, torch.Tensor]:
    module.zero_grad()
    module.train()
    module.log = lambda *args, **kwargs: None  # no Trainer attached: nothing to log to
    module.training_step(batch, 0).backward()
    return {n: p.grad.clone() for n, p in module.image_encoder.named_parameters()}


def _hand_written_ldifs(encoder, frozen, images) -> torch.Tensor:
    """The paper's distance written out: token-normalised taps, squared, mean, mean, mean."""
    names = default_tap_names(encoder)
    with FeatureTaps(frozen, names) as ref_taps, torch.no_grad():
        frozen(images)
    with FeatureTaps(encoder, names) as taps:
        encoder(images)
    per_tap = []
    for f, r in zip(taps.features(), ref_taps.features(), strict=True):
        diff = F.normalize(f, dim=1) - F.normalize(r, dim=1)
        per_tap.append((diff**2).mean(dim=(1, 2)))
    return torch.stack(per_tap).mean(dim=0).mean()


def test_ldifs_term_sends_its_gradient_into_the_trainable_encoder():
    """Gradient of (loss with lambda) - (loss without) equals lambda x the hand-written LDIFS
    gradient; with the distance's arguments swapped it would be zero."""
    weight = 50.0
    regularised = _module(ldifs_weight=weight)
    with torch.no_grad():  # move the trainable encoder away from the copy: LDIFS > 0
        for p in regularised.image_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    plain = _module(ldifs_weight=0.0)
    plain.load_state_dict(regularised.state_dict(), strict=False)
    images = torch.randn(4, 3, 32, 32)
    batch = (images, torch.arange(4) % len(CLASSNAMES))

    with_term = _encoder_grads(regularised, batch)
    without_term = _encoder_grads(plain, batch)

    encoder = regularised.image_encoder.train()
    encoder.zero_grad()
    _hand_written_ldifs(encoder, regularised.pretrained_encoder(), images).backward()
    # Parameters after the last tap (ln_post, proj) get no LDIFS gradient.
    expected = {
        n: weight * (p.grad if p.grad is not None else torch.zeros_like(p))
        for n, p in encoder.named_parameters()
    }
    largest = max(g.abs().max().item() for g in expected.values())
    assert largest > 1e-4  # the term has a gradient worth checking
    # The difference of two float32 gradients carries their rounding, ~1e-7 of their own size.
    full = max(g.abs().max().item() for g in with_term.values())
    for name, grad in expected.items():
        torch.testing.assert_close(
            with_term[name] - without_term[name], grad, rtol=1e-3, atol=1e-6 * max(largest, full)
        )


class _RecordLR(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_learning_rate_follows_warmup_then_cosine_at_every_step_of_a_fit(tmp_path):
    lr, warmup, epochs, batches = 1e-3, 3, 2, 5  # 10 optimizer steps in all
    data = TensorDataset(torch.randn(20, 3, 32, 32), torch.arange(20) % len(CLASSNAMES))
    recorder = _RecordLR()
    module = _module(ldifs_weight=0.0, lr=lr, warmup_steps=warmup)
    quiet_trainer(tmp_path, max_steps=-1, max_epochs=epochs, callbacks=[recorder]).fit(
        module, DataLoader(data, batch_size=4)
    )
    total = epochs * batches
    expected = [
        lr * (s + 1) / warmup
        if s < warmup
        else lr * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
        for s in range(total)
    ]
    assert len(recorder.rates) == total
    for step, (got, want) in enumerate(zip(recorder.rates, expected, strict=True)):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15), step
