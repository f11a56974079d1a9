"""The length of a map-style dataset, checked (torch's ``Dataset`` type declares no ``__len__``)."""

from __future__ import annotations

from collections.abc import Sized

from torch.utils.data import Dataset


def dataset_length(dataset: Dataset) -> int:
    """Number of samples of a map-style ``dataset``.

    ``torch.utils.data.Dataset`` leaves ``__len__`` to subclasses (iterable datasets have
    none), so a plain ``len(dataset)`` does not type-check; this narrows with a clear error.

    Raises:
        TypeError: ``dataset`` has no ``__len__``.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> dataset_length(TensorDataset(torch.zeros(3, 2)))
        3
    """
    if not isinstance(dataset, Sized):
        raise TypeError(
            f"{type(dataset).__name__} has no __len__: give a map-style dataset "
            "(one with __len__ and __getitem__)"
        )
    return len(dataset)
