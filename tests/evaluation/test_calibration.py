"""Expected calibration error against hand computations."""

import math

import pytest
import torch

from ldifs_lightning.evaluation.calibration import ECE_BINS, expected_calibration_error
from ldifs_lightning.evaluation.zero_shot import zero_shot_logits
from tests.ece_by_hand import ece_by_hand, softmax_rows


def test_toy_equals_the_sum_written_out() -> None:
    probabilities = [
        [0.95, 0.03, 0.02],  # label 0: right, confidence 0.95, bin 14 = [14/15, 1)
        [0.91, 0.05, 0.04],  # label 1: wrong, confidence 0.91, bin 13 = [13/15, 14/15)
        [0.50, 0.30, 0.20],  # label 0: right, confidence 0.50, bin 7 = [7/15, 8/15)
        [0.48, 0.42, 0.10],  # label 1: wrong, confidence 0.48, bin 7
        [0.20, 0.70, 0.10],  # label 1: right, confidence 0.70, bin 10 = [10/15, 11/15)
        [0.10, 0.15, 0.75],  # label 2: right, confidence 0.75, bin 11 = [11/15, 12/15)
    ]
    labels = [0, 1, 0, 1, 1, 2]
    # per bin: mass x |accuracy - mean confidence|
    expected = (
        1 / 6 * abs(1.0 - 0.95)  # bin 14
        + 1 / 6 * abs(0.0 - 0.91)  # bin 13
        + 2 / 6 * abs(0.5 - (0.50 + 0.48) / 2)  # bin 7
        + 1 / 6 * abs(1.0 - 0.70)  # bin 10
        + 1 / 6 * abs(1.0 - 0.75)  # bin 11
    )
    assert expected == pytest.approx(0.255)
    logits = torch.tensor(probabilities, dtype=torch.float64).log()  # softmax(log p) = p
    got = expected_calibration_error(logits, torch.tensor(labels))
    assert got == pytest.approx(100.0 * expected, abs=1e-4)
    assert ECE_BINS == 15


def test_random_logits_match_a_plain_python_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(300, 5, generator=generator)
    labels = torch.randint(0, 5, (300,), generator=generator)
    expected = ece_by_hand(softmax_rows(logits.tolist()), labels.tolist(), bins=15)
    assert expected_calibration_error(logits, labels) == pytest.approx(expected, abs=1e-4)
    coarse = ece_by_hand(softmax_rows(logits.tolist()), labels.tolist(), bins=4)
    assert expected_calibration_error(logits, labels, n_bins=4) == pytest.approx(coarse, abs=1e-4)


def test_uniform_predictions_have_ece_of_accuracy_minus_one_over_k() -> None:
    # Equal logits: confidence 1/4 everywhere, prediction class 0 (first maximum).
    labels = torch.tensor([0, 0, 0, 1, 2, 3, 3, 1])
    got = expected_calibration_error(torch.zeros(8, 4), labels)
    assert got == pytest.approx(100.0 * abs(3 / 8 - 1 / 4), abs=1e-4)


def test_zero_shot_temperature_changes_calibration_not_predictions() -> None:
    generator = torch.Generator().manual_seed(1)
    features, classes = (
        torch.randn(64, 8, generator=generator),
        torch.randn(3, 8, generator=generator),
    )
    labels = torch.randint(0, 3, (64,), generator=generator)
    cosine = [[float(torch.dot(f, c) / (f.norm() * c.norm())) for c in classes] for f in features]
    for scale in (1.0, 100.0):
        logits = zero_shot_logits(features, classes, scale)
        torch.testing.assert_close(logits, scale * torch.tensor(cosine), rtol=1e-5, atol=1e-5)
        expected = ece_by_hand(
            softmax_rows([[scale * v for v in row] for row in cosine]), labels.tolist(), bins=15
        )
        assert expected_calibration_error(logits, labels) == pytest.approx(expected, abs=1e-3)
    assert not math.isclose(
        expected_calibration_error(zero_shot_logits(features, classes, 1.0), labels),
        expected_calibration_error(zero_shot_logits(features, classes, 100.0), labels),
    )


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (torch.randn(3), torch.zeros(3, dtype=torch.long), r"logits must be 2-D"),
        (torch.randn(3, 2), torch.zeros(2, dtype=torch.long), r"labels must have shape \[3\]"),
        (torch.randn(3, 2), torch.zeros(3), "integer tensor"),
        (torch.randn(3, 2), torch.tensor([0, 2, 1]), r"contains 2; allowed labels are 0..1"),
        (torch.randn(0, 2), torch.zeros(0, dtype=torch.long), "empty"),
    ],
)
def test_bad_inputs(logits: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(logits, labels)


def test_bad_bins_and_scale() -> None:
    with pytest.raises(ValueError, match="n_bins=0 must be at least 1"):
        expected_calibration_error(torch.randn(2, 2), torch.tensor([0, 1]), n_bins=0)
    with pytest.raises(ValueError, match=r"scale=-1.0 must be a positive finite number"):
        zero_shot_logits(torch.randn(2, 2), torch.eye(2), -1.0)
