"""LFL (Jung et al., 2016) as LDIFS on the root tap without normalisation: the mean squared
difference of the final image embeddings."""

import copy

import pytest
import torch

from ldifs_lightning import FineTuneModule
from ldifs_lightning.models import FeatureTaps, create_clip
from ldifs_lightning.regularizers import LDIFS, EncoderSource, TaskContext, TrainingStep
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT


def _lfl() -> LDIFS:
    return LDIFS(weight=1.0, taps=[""], normalize="none")


def _value(term: LDIFS, encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """One step as a fine-tuning module runs it: the copy first, then the tapped forward."""
    step = TrainingStep(images, torch.zeros(len(images)), encoder)
    term.before_forward(step)
    with FeatureTaps(encoder, term.tap_names) as taps:
        step.embedding = encoder(images)
    step.features = dict(zip(term.tap_names, taps.features(), strict=True))
    return term(step)


def _mean_squared_by_hand(a: torch.Tensor, b: torch.Tensor) -> float:
    """mean over the batch of mean over D of (a - b)^2, with Python loops."""
    rows = [
        sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / len(ra)
        for ra, rb in zip(a.tolist(), b.tolist(), strict=True)
    ]
    return sum(rows) / len(rows)


def _nudge(encoder: torch.nn.Module, scale: float = 0.05) -> None:
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(scale * torch.randn_like(parameter))


def test_lfl_is_the_mean_squared_embedding_difference():
    encoder = create_clip(TINY_VIT).visual
    pretrained = copy.deepcopy(encoder).eval()
    term = _lfl()
    term.bind(encoder, EncoderSource(TINY_VIT, None))
    images = torch.randn(4, 3, 32, 32)
    assert _value(term, encoder, images).item() == 0.0  # step 0: the encoder is the copy

    _nudge(encoder)
    with torch.no_grad():
        expected = _mean_squared_by_hand(encoder(images), pretrained(images))
    assert expected > 1e-6
    assert _value(term, encoder, images).item() == pytest.approx(expected, rel=1e-5)


def test_after_start_task_lfl_measures_against_that_stage_encoder():
    encoder = create_clip(TINY_VIT).visual
    term = _lfl()
    term.bind(encoder, EncoderSource(TINY_VIT, None))
    previous = copy.deepcopy(encoder)
    _nudge(previous)
    term.start_task(TaskContext(1, reference=previous, previous=previous))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = _mean_squared_by_hand(encoder(images), previous.eval()(images))
    assert expected > 1e-6
    assert _value(term, encoder, images).item() == pytest.approx(expected, rel=1e-5)


def test_lfl_in_a_fine_tuning_module_step():
    module = FineTuneModule(
        CLASSNAMES, TEMPLATES, model_name=TINY_VIT, pretrained=None, regularizers=[_lfl()]
    )
    pretrained = copy.deepcopy(module.image_encoder).eval()
    _nudge(module.image_encoder)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.detach())
    module.training_step((images, labels), 0).backward()
    with torch.no_grad():
        expected = _mean_squared_by_hand(module.image_encoder(images), pretrained(images))
    assert logged["train/ldifs"].item() == pytest.approx(expected, rel=1e-5)
