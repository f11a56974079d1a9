"""LP-FT's head initialisation: a linear probe fitted on the training set's features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer

from ldifs_lightning.evaluation.linear_probe import fit_linear_probe


def _train_loader(trainer: Trainer):
    datamodule = trainer.datamodule
    if datamodule is None:
        raise ValueError(
            "head_init='linear_probe' (LP-FT) needs a LightningDataModule with a training split; "
            "pass datamodule= to Trainer.fit"
        )
    try:
        loader = datamodule.train_dataloader()
        size = len(loader)
    except Exception:  # a DataModule without train data fails in many ways (None, no hook, ...)
        size = 0
    if size == 0:
        raise ValueError(
            f"head_init='linear_probe' (LP-FT) needs a training split, but "
            f"{type(datamodule).__name__} has none"
        )
    return loader


@torch.no_grad()
def fit_probe_head(module: LightningModule, trainer: Trainer) -> None:
    """Set ``module.head`` to a probe fitted on l2-normalised features of the training set.

    Under DDP every rank extracts its shard, the shards are gathered, and every rank fits the same
    deterministic probe on the same features, so the heads are identical.
    """
    loader = _train_loader(trainer)
    encoder = module.image_encoder
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    try:
        for images, targets in loader:
            images = images.to(module.device)
            features.append(F.normalize(encoder(images).float(), dim=-1))
            labels.append(targets.to(module.device))
    finally:
        encoder.train(was_training)
    features, labels = torch.cat(features), torch.cat(labels)
    if trainer.world_size > 1:
        features = module.all_gather(features).flatten(0, 1)
        labels = module.all_gather(labels).flatten(0, 1)
    probe = fit_linear_probe(
        features, labels, num_classes=len(module.classnames), seed=module.hparams.seed
    )
    module.head.weight.copy_(probe.weight.to(module.head.weight))
    module.head.bias.copy_(probe.bias.to(module.head.bias))
