import pytest
import torch

from ldifs_lightning.evaluation import zero_shot_accuracy


def test_matches_a_loop_over_cosine_similarities() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(50, 6, generator=generator) * 3.0  # not normalised on purpose
    classes = torch.randn(4, 6, generator=generator)
    labels = torch.randint(0, 4, (50,), generator=generator)
    correct = 0
    for row, label in zip(features, labels, strict=True):
        similarity = [
            float(torch.dot(row, c) / (row.norm() * c.norm())) for c in classes
        ]  # independent of the function's matmul path
        correct += int(max(range(4), key=similarity.__getitem__) == int(label))
    assert zero_shot_accuracy(features, labels, classes) == pytest.approx(correct / 50)


def test_normalisation_removes_norm_bias() -> None:
    # Unnormalised, the long class vector would win every dot product; by cosine it wins nothing.
    classes = torch.tensor([[10.0, 10.0], [0.0, 1.0], [1.0, 0.0]])
    features = torch.tensor([[0.0, 2.0], [3.0, 0.1], [0.1, 1.0]])
    assert zero_shot_accuracy(features, torch.tensor([1, 2, 1]), classes) == 1.0
    assert zero_shot_accuracy(features, torch.tensor([0, 0, 0]), classes) == 0.0


def test_half_precision_inputs() -> None:
    classes = torch.eye(3, dtype=torch.float16)
    features = torch.tensor([[1.0, 0.2, 0.0], [0.0, 0.1, 0.9]], dtype=torch.float16)
    assert zero_shot_accuracy(features, torch.tensor([0, 1]), classes) == 0.5


@pytest.mark.parametrize(
    ("features", "labels", "classes", "message"),
    [
        (torch.randn(3, 4), torch.zeros(3, dtype=torch.long), torch.randn(2, 5), "dimension 5"),
        (torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.randn(2, 4), "contains 2; allowed"),
        (torch.randn(3, 4), torch.tensor([0, -1, 0]), torch.randn(2, 4), "contains -1"),
        (torch.randn(3, 4), torch.zeros(2, dtype=torch.long), torch.randn(2, 4), r"shape \[3\]"),
        (torch.randn(3, 4), torch.zeros(3), torch.randn(2, 4), "integer tensor"),
        (torch.randn(4), torch.zeros(4, dtype=torch.long), torch.randn(2, 4), "features must"),
        (torch.randn(3, 4), torch.zeros(3, dtype=torch.long), torch.randn(4), "class_embeddings"),
        (torch.randn(0, 4), torch.zeros(0, dtype=torch.long), torch.randn(2, 4), "empty"),
    ],
)
def test_bad_inputs(
    features: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        zero_shot_accuracy(features, labels, classes)
