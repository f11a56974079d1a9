"""LwF: KL of the old heads' softened outputs between the previous and the current encoder."""

import copy
import math

import pytest
import torch

from ldifs_lightning import FineTuneModule
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.models import create_clip
from ldifs_lightning.modules.fine_tuner import CLIPFineTuner
from ldifs_lightning.regularizers import (
    EncoderSource,
    LwF,
    TaskContext,
    TrainingStep,
    distillation_kl,
)
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT, quiet_trainer

SOURCE = EncoderSource(TINY_VIT, None)


def _value(lwf: LwF, encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """One step as a fine-tuning module runs it: before_forward, the forward, the term."""
    step = TrainingStep(images, torch.zeros(len(images)), encoder)
    lwf.before_forward(step)
    step.embedding = encoder(images)
    return lwf(step)


def _heads(*sizes: int, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(k, width), torch.randn(k)) for k in sizes]


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


def _logits_by_hand(encoder: torch.nn.Linear, head, x: torch.Tensor) -> list[list[float]]:
    """head(normalize(encoder(x))) with the norm written out, as nested lists."""
    weight, bias = head
    rows = []
    for sample in x.tolist():
        e = [
            sum(w * v for w, v in zip(w_row, sample, strict=True)) + b
            for w_row, b in zip(encoder.weight.tolist(), encoder.bias.tolist(), strict=True)
        ]
        norm = math.sqrt(sum(v * v for v in e))
        unit = [v / norm for v in e]
        rows.append(
            [
                sum(w * u for w, u in zip(w_row, unit, strict=True)) + b
                for w_row, b in zip(weight.tolist(), bias.tolist(), strict=True)
            ]
        )
    return rows


def test_value_is_the_kl_written_out_summed_over_two_old_heads():
    student, previous = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    heads = _heads(2, 3, width=4)
    lwf = LwF(weight=1.0, temperature=2.0)
    lwf.bind(student, SOURCE)
    lwf.start_task(TaskContext(1, None, previous=previous, previous_heads=heads))
    x = torch.randn(5, 3)

    expected = sum(
        _kl_by_hand(_logits_by_hand(student, head, x), _logits_by_hand(previous, head, x), t=2.0)
        for head in heads
    )
    assert expected > 1e-3
    assert _value(lwf, student, x).item() == pytest.approx(expected, rel=1e-5)


def test_distillation_kl_matches_the_formula_and_is_zero_for_equal_logits():
    student = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    teacher = torch.tensor([[0.3, 0.1, -1.0], [2.0, 2.5, 0.0]])
    expected = _kl_by_hand(student.tolist(), teacher.tolist(), t=3.0)
    assert distillation_kl(student, teacher, 3.0).item() == pytest.approx(expected, rel=1e-6)
    assert distillation_kl(teacher, teacher, 3.0).item() == 0.0


def test_zero_when_the_encoder_is_the_previous_one_and_positive_after_a_step():
    encoder = create_clip(TINY_VIT).visual
    lwf = LwF()
    lwf.bind(encoder, SOURCE)
    context = TaskContext(1, None, copy.deepcopy(encoder), previous_heads=_heads(3, 2, width=32))
    lwf.start_task(context)
    images = torch.randn(4, 3, 32, 32)
    assert _value(lwf, encoder, images).item() == 0.0

    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    encoder(images).square().sum().backward()
    optimizer.step()
    assert _value(lwf, encoder, images).item() > 1e-6


def test_without_old_heads_the_value_is_zero_and_backward_works():
    encoder = torch.nn.Linear(3, 4)
    lwf = LwF()
    lwf.bind(encoder, SOURCE)
    x = torch.randn(2, 3)
    value = _value(lwf, encoder, x)
    assert value.item() == 0.0
    (encoder(x).sum() + value).backward()  # adding the term does not break the backward


def test_a_fresh_instance_loads_the_heads_and_teacher_it_never_saw_start_task_for():
    encoder, previous = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    lwf = LwF(temperature=1.5)
    lwf.bind(encoder, SOURCE)
    lwf.start_task(TaskContext(2, None, previous, previous_heads=_heads(2, 3, width=4)))

    fresh = LwF(temperature=1.5)
    fresh.bind(torch.nn.Linear(3, 4), SOURCE)
    assert fresh.num_old_heads == 0
    fresh.load_state_dict(lwf.state_dict())
    assert fresh.num_old_heads == 2
    for name, value in lwf.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    x = torch.randn(3, 3)
    assert _value(fresh, encoder, x).item() == _value(lwf, encoder, x).item() > 0


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_a_temperature_that_is_not_positive_is_refused(temperature):
    with pytest.raises(ValueError, match=rf"LwF: temperature={temperature} must be > 0"):
        LwF(temperature=temperature)


def test_a_negative_weight_is_refused():
    with pytest.raises(ValueError, match=r"LwF: weight=-1.0 must be >= 0"):
        LwF(weight=-1.0)


def test_heads_of_different_widths_are_refused():
    lwf = LwF()
    lwf.bind(torch.nn.Linear(3, 4), SOURCE)
    heads = [*_heads(2, width=4), *_heads(2, width=5)]
    with pytest.raises(ValueError, match="different widths"):
        lwf.start_task(TaskContext(1, None, torch.nn.Linear(3, 4), previous_heads=heads))


def test_a_training_step_of_a_fine_tuning_module_with_lwf():
    module = FineTuneModule(
        CLASSNAMES, TEMPLATES, model_name=TINY_VIT, pretrained=None, regularizers=[LwF()]
    )
    previous = copy.deepcopy(module.image_encoder)
    with torch.no_grad():  # the previous stage ended elsewhere: the term is not 0
        for parameter in previous.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    heads = _heads(4, 2, width=32)
    module.terms[0].start_task(TaskContext(1, None, previous, previous_heads=heads))
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.detach())
    loss = module.training_step((torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])), 0)
    assert torch.isfinite(loss)
    assert logged["train/lwf"] > 0
    torch.testing.assert_close(loss.detach(), logged["train/ce"] + logged["train/lwf"])
    loss.backward()
    assert module.image_encoder.conv1.weight.grad is not None


def test_a_stage_checkpoint_loads_into_a_module_built_fresh(tmp_path):
    data = FineTuneDataModule(
        "shapes", image_size=32, batch_size=16, max_train_samples=32, max_test_samples=32
    )
    module = FineTuneModule(
        data.classnames,
        data.templates,
        model_name=TINY_VIT,
        pretrained="demo",
        lr=1e-2,
        warmup_steps=1,
        regularizers=[LwF()],
    )
    previous = copy.deepcopy(module.image_encoder)
    heads = _heads(3, 2, width=32)
    module.terms[0].start_task(TaskContext(1, None, previous, previous_heads=heads))
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    path = tmp_path / "stage-1.ckpt"
    trainer.save_checkpoint(path)

    loaded = CLIPFineTuner.load_from_checkpoint(path)  # no start_task: shapes from the file
    term = loaded.terms[0]
    assert isinstance(term, LwF) and term.num_old_heads == 2
    for name, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # The teacher is the previous stage's encoder, stored in the checkpoint.
    for name, value in previous.state_dict().items():
        assert torch.equal(term.teacher.encoder.state_dict()[name], value), name
