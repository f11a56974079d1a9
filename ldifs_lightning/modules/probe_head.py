"""LP-FT's head initialisation: a linear probe fitted on the training set's features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ldifs_lightning.distributed import all_gather_objects, broadcast_from_rank_zero
from ldifs_lightning.evaluation.features import PrecisionEncoder, extract_features
from ldifs_lightning.evaluation.linear_probe import fit_linear_probe

if TYPE_CHECKING:
    from ldifs_lightning.modules.fine_tuner import CLIPFineTuner


def _train_loader(trainer: Trainer) -> DataLoader:
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        raise ValueError(
            "head_init='linear_probe' (LP-FT) needs a LightningDataModule with a training split; "
            "pass datamodule= to Trainer.fit"
        )
    try:
        loader = datamodule.train_dataloader()
        size = len(loader)
    except Exception as error:  # a DataModule without train data fails in many ways
        raise ValueError(
            f"head_init='linear_probe' (LP-FT) needs a training split, but "
            f"{type(datamodule).__name__}.train_dataloader() failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    if size == 0:
        raise ValueError(
            f"head_init='linear_probe' (LP-FT) needs a training split, but "
            f"{type(datamodule).__name__} has none"
        )
    return loader


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
            "head_init='linear_probe' (LP-FT) needs a map-style training dataset with a batch "
            f"size, got a loader over {type(loader.dataset).__name__}"
        )
    keys = [key for batch in loader.batch_sampler for key in batch]
    shards = all_gather_objects(keys)
    if len({len(shard) for shard in shards}) > 1:
        raise ValueError(
            "head_init='linear_probe' (LP-FT) needs the same number of training samples on "
            f"every rank, got {[len(shard) for shard in shards]}; use a DistributedSampler"
        )
    interleaved = [key for group in zip(*shards, strict=True) for key in group]
    return _SampledItems(loader.dataset, interleaved)


@torch.no_grad()
def fit_probe_head(module: CLIPFineTuner, trainer: Trainer) -> None:
    """Set ``module.head`` to a probe fitted on l2-normalised features of the training set.

    The features come from :func:`~ldifs_lightning.evaluation.features.extract_features` (the
    path the forgetting callback measures with) over the items the DataModule's training loader
    delivers in its first epoch, in its order and with its augmentation, in batches of its size.
    Under DDP every rank encodes its own loader's shard (the loader must shard, as
    ``FineTuneDataModule``'s does), the shards are gathered, the probe is fitted on rank zero and
    its weights broadcast, so every rank starts from the same head.

    The encoder runs as in a training step, under the trainer's precision plugin: inputs are
    converted to its dtype (``bf16-true``/``16-true`` weights need bf16/fp16 images) and the
    forward runs in its context (autocast for ``*-mixed``). The probe is fitted in float32.

    Example:
        >>> module = LDIFSModule(classes, templates, head_init="linear_probe")  # doctest: +SKIP
        >>> trainer.fit(module, datamodule=data)  # fits the head at fit start  # doctest: +SKIP
    """
    loader = _train_loader(trainer)
    features, labels = extract_features(
        PrecisionEncoder(module.image_encoder, trainer.precision_plugin),
        _training_items(loader),
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
            outcome = f"head_init='linear_probe' (LP-FT) could not fit the probe: {error}"
    outcome = broadcast_from_rank_zero(outcome)
    if isinstance(outcome, str):
        raise ValueError(outcome)
    if outcome is None:  # only rank zero fits; every rank receives its outcome
        raise RuntimeError("rank zero sent no linear-probe head")
    weight, bias = outcome
    module.head.weight.copy_(weight.to(module.head.weight))
    module.head.bias.copy_(bias.to(module.head.bias))
