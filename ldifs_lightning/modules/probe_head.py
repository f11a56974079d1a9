"""LP's head and LP-FT's head initialisation: a linear probe fitted on the fit split's features.

The features are those of the fit split (train minus val) under the eval transform, as the
reference code fits its probe head: a DataModule offers them through ``fit_eval_dataloader()``
(:class:`~ldifs_lightning.data.FineTuneDataModule` does). Another DataModule's training loader is
used as it delivers its items (its augmentation included), with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ldifs_lightning.distributed import all_gather_objects, broadcast_from_rank_zero
from ldifs_lightning.evaluation.features import PrecisionEncoder, extract_features
from ldifs_lightning.evaluation.linear_probe import fit_linear_probe

if TYPE_CHECKING:
    from ldifs_lightning.modules.fine_tuner import CLIPFineTuner


_WHO = "head_init='linear_probe' (LP, LP-FT)"


def _probe_loader(trainer: Trainer) -> tuple[DataLoader, bool]:
    """The loader whose images the probe is fitted on, and whether it is the eval-transform one.

    ``fit_eval_dataloader()`` when the DataModule has it, else its ``train_dataloader()``.
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        raise ValueError(
            f"{_WHO} needs a LightningDataModule with a training split; pass datamodule= to "
            "Trainer.fit"
        )
    eval_transform = callable(getattr(datamodule, "fit_eval_dataloader", None))
    method = "fit_eval_dataloader" if eval_transform else "train_dataloader"
    try:
        loader = getattr(datamodule, method)()
        size = len(loader)
    except Exception as error:  # a DataModule without train data fails in many ways
        raise ValueError(
            f"{_WHO} needs a training split, but {type(datamodule).__name__}.{method}() failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    if size == 0:
        raise ValueError(f"{_WHO} needs a training split, but {type(datamodule).__name__} has none")
    if not eval_transform:
        rank_zero_warn(
            f"{type(datamodule).__name__} has no fit_eval_dataloader(): the linear-probe head is "
            "fitted on its training loader's items, augmentation included; add a "
            "fit_eval_dataloader() returning the training split with the eval transform"
        )
    return loader, eval_transform


class _SampledItems(Dataset):
    """The items a loader's sampler picks, in its order, as a map-style dataset.

    Keys are what the sampler yields (``FineTuneDataModule``'s are ``(index, sample_seed)``
    pairs, which fix each image's augmentation), so item ``i`` is the image the loader would
    deliver ``i``-th.
    """

    def __init__(self, dataset: Dataset, keys: list) -> None:
        self.dataset, self.keys = dataset, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, position: int) -> Any:
        return self.dataset[self.keys[position]]


def _training_items(loader: DataLoader) -> _SampledItems:
    """Every rank's training items in one sequence that :func:`extract_features` shards back.

    Under DDP rank r's sampler yields its shard; interleaving the shards (rank r's m-th key at
    position m * W + r) gives a sequence whose strided shard for rank r is exactly the items
    its own loader would encode, and, for a ``DistributedSampler``, the shuffled order of the
    whole training set that one process would see.
    """
    if isinstance(loader.dataset, IterableDataset) or loader.batch_sampler is None:
        raise ValueError(
            f"{_WHO} needs a map-style training dataset with a batch size, got a loader over "
            f"{type(loader.dataset).__name__}"
        )
    keys = [key for batch in loader.batch_sampler for key in batch]
    shards = all_gather_objects(keys)
    if len({len(shard) for shard in shards}) > 1:
        raise ValueError(
            f"{_WHO} needs the same number of training samples on every rank, got "
            f"{[len(shard) for shard in shards]}; use a DistributedSampler"
        )
    interleaved = [key for group in zip(*shards, strict=True) for key in group]
    return _SampledItems(loader.dataset, interleaved)


@torch.no_grad()
def fit_probe_head(module: CLIPFineTuner, trainer: Trainer) -> None:
    """Set ``module.head`` to a probe fitted on l2-normalised features of the fit split.

    The features come from :func:`~ldifs_lightning.evaluation.features.extract_features` (the
    path the forgetting callback measures with) over the DataModule's ``fit_eval_dataloader()``:
    the fit split with the eval transform, each image once, in batches of its size. A DataModule
    without that method gives its training loader's first-epoch items instead (its order and
    augmentation; the loader must shard under DDP), with a warning. Under DDP every rank encodes
    its shard, the shards are gathered, the probe (its l2 strength chosen on a seeded held-out
    part, see :func:`~ldifs_lightning.evaluation.linear_probe.fit_linear_probe`) is fitted on
    rank zero and its weights broadcast, so every rank holds the same head.

    The encoder runs as in a training step, under the trainer's precision plugin: inputs are
    converted to its dtype (``bf16-true``/``16-true`` weights need bf16/fp16 images) and the
    forward runs in its context (autocast for ``*-mixed``). The probe is fitted in float32.

    Example:
        >>> module = LDIFSModule(classes, templates, head_init="linear_probe")  # doctest: +SKIP
        >>> trainer.fit(module, datamodule=data)  # fits the head at fit start  # doctest: +SKIP
    """
    loader, eval_transform = _probe_loader(trainer)
    items: Dataset = loader.dataset if eval_transform else _training_items(loader)
    features, labels = extract_features(
        PrecisionEncoder(module.image_encoder, trainer.precision_plugin),
        items,
        batch_size=loader.batch_size or 1,
        device=module.device,
        num_workers=loader.num_workers,
    )
    outcome: tuple[torch.Tensor, torch.Tensor] | str | None = None
    if trainer.is_global_zero:
        try:
            probe = fit_linear_probe(
                features, labels, num_classes=len(module.classnames), seed=module.seed
            )
            outcome = (probe.weight.cpu(), probe.bias.cpu())
        except ValueError as error:  # shared, so no rank waits forever for rank zero
            outcome = f"{_WHO} could not fit the probe: {error}"
    outcome = broadcast_from_rank_zero(outcome)
    if isinstance(outcome, str):
        raise ValueError(outcome)
    if outcome is None:  # only rank zero fits; every rank receives its outcome
        raise RuntimeError("rank zero sent no linear-probe head")
    weight, bias = outcome
    module.head.weight.copy_(weight.to(module.head.weight))
    module.head.bias.copy_(bias.to(module.head.bias))
