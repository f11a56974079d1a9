"""ZSCL: KL of pre-trained and fine-tuned CLIP logits on reference images against fixed texts."""

import copy
import math

import pytest
import torch

from ldifs_lightning import FineTuneModule
from ldifs_lightning.data import FineTuneDataModule, get_dataset_info
from ldifs_lightning.data import registry as data_registry
from ldifs_lightning.models import create_clip, get_tokenizer, zero_shot_class_embeddings
from ldifs_lightning.modules.fine_tuner import CLIPFineTuner
from ldifs_lightning.regularizers import (
    ZSCL,
    EncoderSource,
    TaskContext,
    TrainingStep,
    zscl_distillation,
)
from tests.conftest import TINY_VIT, quiet_trainer

DEMO = EncoderSource(TINY_VIT, "demo")


def _kl_by_hand(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    """Mean over rows of sum_k p_k (log p_k - log q_k), p = softmax(teacher / t), q = student's."""

    def log_softmax(row: list[float]) -> list[float]:
        log_sum = math.log(sum(math.exp(z / t) for z in row))
        return [z / t - log_sum for z in row]

    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        log_q, log_p = log_softmax(s_row), log_softmax(t_row)
        total += sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q, strict=True))
    return total / len(student)


def _clip_logits_by_hand(
    embeddings: torch.Tensor, texts: torch.Tensor, scale: float
) -> list[list[float]]:
    """scale * cosine(image embedding, text embedding), with the norm written out."""
    rows = []
    for e in embeddings.tolist():
        norm = math.sqrt(sum(v * v for v in e))
        rows.append(
            [scale * sum(v / norm * w for v, w in zip(e, t, strict=True)) for t in texts.tolist()]
        )
    return rows


def _value(zscl: ZSCL, encoder: torch.nn.Module, global_step: int = 0) -> torch.Tensor:
    step = TrainingStep(torch.randn(2, 3, 32, 32), torch.zeros(2), encoder)
    step.global_step = global_step
    zscl.before_forward(step)
    step.embedding = encoder(step.images)
    return zscl(step)


def _bound(**overrides) -> tuple[ZSCL, torch.nn.Module]:
    encoder = create_clip(TINY_VIT, "demo").visual
    kwargs = dict(num_images=32, batch_size=8)
    kwargs.update(overrides)
    zscl = ZSCL("shapes", **kwargs)
    zscl.bind(encoder, DEMO)
    return zscl, encoder


def test_zscl_distillation_is_the_kl_written_out_on_a_toy():
    student, teacher = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    images = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.3]])
    texts = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.6, 0.8, 0.0], [0.0, 0.0, 0.0, 1.0]])
    expected = _kl_by_hand(
        _clip_logits_by_hand(student(images), texts, 10.0),
        _clip_logits_by_hand(teacher(images), texts, 10.0),
        t=2.0,
    )
    value = zscl_distillation(student(images), teacher(images), texts, 10.0, 2.0)
    assert expected > 1e-3
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_value_on_the_demo_clip_is_the_kl_of_its_zero_shot_logits():
    zscl, encoder = _bound(temperature=3.0)
    pretrained = copy.deepcopy(encoder).eval()
    assert _value(zscl, encoder, global_step=4).item() == 0.0  # step 0: student == teacher

    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    encoder(torch.randn(4, 3, 32, 32)).square().sum().backward()
    optimizer.step()

    # The texts: the demo CLIP's text tower on the shapes captions, made here independently.
    clip = create_clip(TINY_VIT, "demo")
    info = get_dataset_info("shapes")
    texts = zero_shot_class_embeddings(
        clip, get_tokenizer(TINY_VIT), info.classnames, info.templates
    )
    torch.testing.assert_close(zscl.text_embeddings, texts)
    scale = clip.logit_scale.exp().item()
    images = zscl.reference_batch(4)
    with torch.no_grad():
        expected = _kl_by_hand(
            _clip_logits_by_hand(encoder(images), texts, scale),
            _clip_logits_by_hand(pretrained(images), texts, scale),
            t=3.0,
        )
    assert expected > 1e-6
    assert _value(zscl, encoder, global_step=4).item() == pytest.approx(expected, rel=1e-4)


def test_the_same_step_draws_the_same_reference_images():
    zscl, _ = _bound()
    again, _ = _bound()  # e.g. a resumed run: built anew
    batch = zscl.reference_batch(7)
    assert batch.shape == (8, 3, 32, 32)
    assert torch.equal(batch, zscl.reference_batch(7))
    assert torch.equal(batch, again.reference_batch(7))
    assert not torch.equal(batch, zscl.reference_batch(8))
    other_seed, _ = _bound(seed=1)
    assert not torch.equal(batch, other_seed.reference_batch(7))


def test_start_task_keeps_the_pretrained_teacher():
    zscl, encoder = _bound()
    before = copy.deepcopy(zscl.teacher.encoder.state_dict())
    previous = copy.deepcopy(encoder)
    with torch.no_grad():
        for parameter in previous.parameters():
            parameter.add_(1.0)
    zscl.start_task(TaskContext(1, reference=previous, previous=previous))
    for name, value in zscl.teacher.encoder.state_dict().items():
        assert torch.equal(value, before[name]), name


def _module() -> FineTuneModule:
    info = get_dataset_info("shapes")
    return FineTuneModule(
        list(info.classnames),
        list(info.templates),
        model_name=TINY_VIT,
        pretrained="demo",
        lr=1e-2,
        warmup_steps=1,
        regularizers=[ZSCL("shapes", num_images=32, batch_size=8)],
    )


def test_a_training_step_of_a_fine_tuning_module_with_zscl():
    module = _module()
    with torch.no_grad():
        for parameter in module.image_encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.detach())
    loss = module.training_step((torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])), 0)
    assert torch.isfinite(loss)
    assert logged["train/zscl"] > 0
    loss.backward()
    assert module.image_encoder.conv1.weight.grad is not None


def test_a_checkpoint_restores_the_text_embeddings_without_embedding_texts(tmp_path, monkeypatch):
    data = FineTuneDataModule(
        "shapes", image_size=32, batch_size=16, max_train_samples=32, max_test_samples=32
    )
    module = _module()
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    path = tmp_path / "one-step.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(key.startswith("regularizers.0.teacher.") for key in saved)  # rebuildable

    def no_text_tower(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not embed the texts again")

    monkeypatch.setattr(
        "ldifs_lightning.regularizers.zscl.zero_shot_class_embeddings", no_text_tower
    )
    loaded = CLIPFineTuner.load_from_checkpoint(path)
    term = loaded.terms[0]
    assert isinstance(term, ZSCL)
    assert torch.equal(term.text_embeddings, module.terms[0].text_embeddings)
    assert torch.equal(term.logit_scale, module.terms[0].logit_scale)
    for name, value in module.image_encoder.state_dict().items():
        assert torch.equal(loaded.image_encoder.state_dict()[name], value), name
    # The teacher is the pre-trained encoder, rebuilt: the fine-tuned module's value is not 0.
    assert _value(term, loaded.image_encoder).item() > 0


def test_an_unknown_reference_dataset_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"ZSCL reference_dataset: unknown dataset 'nope'.*shapes"):
        ZSCL("nope")
    with pytest.raises(ValueError, match=r"ZSCL needs reference_dataset: .*'shapes'"):
        ZSCL("")


def test_a_reference_dataset_without_class_names_is_refused(monkeypatch):
    shapes = get_dataset_info("shapes")
    nameless = data_registry.DatasetInfo("nameless", (), shapes.templates, shapes.load)
    monkeypatch.setitem(data_registry._REGISTRY, "nameless", nameless)
    with pytest.raises(ValueError, match=r"ZSCL needs reference texts: dataset 'nameless'"):
        ZSCL("nameless")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"temperature": 0.0}, r"ZSCL: temperature=0.0 must be > 0"),
        ({"batch_size": 0}, r"ZSCL: batch_size=0 must be at least 1"),
        ({"num_images": 0}, r"ZSCL: num_images=0 must be at least 1"),
        ({"weight": -1.0}, r"ZSCL: weight=-1.0 must be >= 0"),
        ({"templates": ["no placeholder"]}, r"template 'no placeholder' must be a string"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(arguments, message):
    with pytest.raises(ValueError, match=message):
        ZSCL("shapes", **arguments)


def test_missing_files_fail_when_bound(tmp_path):
    zscl = ZSCL("cifar10", root=str(tmp_path))  # a known dataset whose files are not there
    with pytest.raises(ValueError, match=r"ZSCL reference_dataset='cifar10': cannot read"):
        zscl.bind(create_clip(TINY_VIT, "demo").visual, DEMO)


def test_random_weights_have_no_pretrained_texts():
    zscl = ZSCL("shapes")
    with pytest.raises(ValueError, match="pretrained=None has none"):
        zscl.bind(create_clip(TINY_VIT).visual, EncoderSource(TINY_VIT, None))
