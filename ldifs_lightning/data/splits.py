"""Train/val splits that are identical on every machine, whatever the file listing order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _rank(sample_id: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()


def split_train_val(
    sample_ids: Sequence[str], val_fraction: float = 0.1, seed: int = 0, max_val: int = 20_000
) -> tuple[list[int], list[int]]:
    """Seeded split of one official train split into train and val indices.

    Each sample is ranked by ``sha256(f"{seed}:{sample_id}")``; the lowest-ranked
    ``min(round(val_fraction * N), max_val)`` samples form val. The result depends only on the ids
    and the seed, never on the order the ids are listed in. Both index lists are sorted.

    Example:
        >>> train, val = split_train_val([f"img{i}" for i in range(10)], val_fraction=0.2)
        >>> len(train), len(val)
        (8, 2)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    if len(set(sample_ids)) != len(sample_ids):
        raise ValueError("sample ids must be unique to derive a stable split")
    num_val = min(round(val_fraction * len(sample_ids)), max_val)
    order = sorted(range(len(sample_ids)), key=lambda index: _rank(sample_ids[index], seed))
    val = sorted(order[:num_val])
    train = sorted(order[num_val:])
    return train, val


def split_held_out(
    sample_ids: Sequence[str], labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded, per-class split of a dataset that has no official test split.

    Within each class the samples are ranked by ``sha256(f"{seed}:{sample_id}")`` and the lowest
    ``round(fraction * n_class)`` are held out, so every class keeps its share and the result
    depends only on the ids, labels and seed (never on listing order).

    Returns:
        ``(kept, held_out)``: sorted index lists.

    Example:
        >>> ids = [f"{c}/{i}.jpg" for c in "ab" for i in range(10)]
        >>> kept, held_out = split_held_out(ids, [0] * 10 + [1] * 10, fraction=0.2, seed=0)
        >>> len(kept), len(held_out)
        (16, 4)
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction={fraction} must be in (0, 1)")
    if len(sample_ids) != len(labels):
        raise ValueError(f"{len(sample_ids)} sample ids but {len(labels)} labels")
    if len(set(sample_ids)) != len(sample_ids):
        raise ValueError("sample ids must be unique to derive a stable split")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    held_out: list[int] = []
    for indices in by_class.values():
        ranked = sorted(indices, key=lambda index: _rank(sample_ids[index], seed))
        held_out.extend(ranked[: round(fraction * len(indices))])
    held = set(held_out)
    return [index for index in range(len(sample_ids)) if index not in held], sorted(held_out)
