"""A stage's LDIFS / L2SP reference encoder: ``previous``, ``original`` or ``best_previous``.

``best_previous`` measures every earlier encoder (the pre-trained one included) on the new task's
validation split with the head the stage would start from, and takes the best
(:func:`choose_best_previous`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ldifs_lightning.evaluation.classification import classification_accuracy
from ldifs_lightning.evaluation.features import extract_features
from ldifs_lightning.evaluation.linear_probe import fit_linear_probe

#: The candidate name of the pre-trained encoder in a validation table.
PRETRAINED = "pretrained"


def choose_best_previous(table: Mapping[str, float]) -> str:
    """The candidate with the highest validation accuracy; on a tie, the one listed last.

    ``table`` lists the candidates in stage order (``pretrained`` first, then the earlier stages),
    so a tie goes to the most recent encoder, which has learned the most tasks.

    Example:
        >>> choose_best_previous({"pretrained": 40.0, "stage-0": 55.0, "stage-1": 55.0})
        'stage-1'
    """
    if not table:
        raise ValueError("best_previous needs at least one candidate encoder")
    best = max(table.values())
    return [name for name, accuracy in table.items() if accuracy == best][-1]


def validation_accuracy(
    encoder: nn.Module,
    head_init: str,
    *,
    zero_shot_head: nn.Linear,
    fit_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    device: torch.device,
    seed: int = 0,
) -> float:
    """Accuracy (%) on the new task's validation split of ``encoder`` with the head the stage
    would start from: the pre-trained zero-shot head (``head_init="zeroshot"``), or a linear
    probe fitted on ``encoder``'s fit-split features under the eval transform (``linear_probe``).

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = DataLoader(TensorDataset(torch.eye(2), torch.tensor([0, 1])))
        >>> head = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = head.weight.copy_(torch.eye(2)); _ = head.bias.zero_()
        >>> validation_accuracy(nn.Identity(), "zeroshot", zero_shot_head=head,
        ...                     fit_loader=data, val_loader=data, device=torch.device("cpu"))
        100.0
    """
    encoder = encoder.to(device)
    if head_init == "zeroshot":
        return classification_accuracy(encoder, zero_shot_head.to(device), val_loader, device)
    fit_features, fit_labels = extract_features(
        encoder, fit_loader.dataset, batch_size=fit_loader.batch_size or 256, device=device
    )
    probe = fit_linear_probe(
        fit_features, fit_labels, num_classes=zero_shot_head.out_features, seed=seed
    )
    val_features, val_labels = extract_features(
        encoder, val_loader.dataset, batch_size=val_loader.batch_size or 256, device=device
    )
    predictions = probe.predict(val_features).cpu()
    return 100.0 * float((predictions == val_labels.cpu()).float().mean())
