"""Expected calibration error written out in plain Python, to check the library's against."""

import math
from collections.abc import Sequence


def ece_by_hand(
    probabilities: Sequence[Sequence[float]], labels: Sequence[int], bins: int
) -> float:
    """ECE in % : bins [k/bins, (k+1)/bins) of the top probability, sum of mass x |acc - conf|."""
    members: dict[int, list[tuple[float, float]]] = {}
    for row, label in zip(probabilities, labels, strict=True):
        confidence = max(row)
        predicted = row.index(confidence)
        members.setdefault(math.floor(confidence * bins), []).append(
            (float(predicted == label), confidence)
        )
    total = len(labels)
    error = 0.0
    for pairs in members.values():
        accuracy = sum(hit for hit, _ in pairs) / len(pairs)
        confidence = sum(conf for _, conf in pairs) / len(pairs)
        error += len(pairs) / total * abs(accuracy - confidence)
    return 100.0 * error


def softmax_rows(logits: Sequence[Sequence[float]]) -> list[list[float]]:
    """Row-wise softmax in plain Python."""
    rows = []
    for row in logits:
        top = max(row)
        exps = [math.exp(v - top) for v in row]
        rows.append([e / sum(exps) for e in exps])
    return rows
