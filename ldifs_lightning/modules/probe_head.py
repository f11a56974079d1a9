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


@torch.no_grad()
def fit_probe_head(module: LightningModule, trainer: Trainer) -> None:
    """Set ``module.head`` to a probe fitted on l2-normalised features of the training set.

    Under DDP every rank extracts its shard (the DataModule's loader must shard, as
    ``FineTuneDataModule``'s does), the shards are gathered, the probe is fitted on rank zero and
    its weights broadcast, so every rank starts from the same head.

    The encoder runs as in a training step, under the trainer's precision plugin: inputs are
    converted to its dtype (``bf16-true``/``16-true`` weights need bf16/fp16 images) and the
    forward runs in its context (autocast for ``*-mixed``). The probe is fitted in float32.
    """
    loader = _train_loader(trainer)
    encoder = module.image_encoder
    precision = trainer.precision_plugin
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    try:
        for images, targets in loader:
            images = precision.convert_input(images.to(module.device))
            with precision.forward_context():
                embedding = encoder(images)
            features.append(F.normalize(embedding.float(), dim=-1))
            labels.append(targets.to(module.device))
    finally:
        encoder.train(was_training)
    features, labels = torch.cat(features), torch.cat(labels)
    if trainer.world_size > 1:
        features = module.all_gather(features).flatten(0, 1)
        labels = module.all_gather(labels).flatten(0, 1)
    weight, bias = module.head.weight.detach().clone(), module.head.bias.detach().clone()
    if trainer.is_global_zero:
        probe = fit_linear_probe(
            features, labels, num_classes=len(module.classnames), seed=module.hparams.seed
        )
        weight, bias = probe.weight.to(weight), probe.bias.to(bias)
    weight, bias = trainer.strategy.broadcast((weight, bias), src=0)
    module.head.weight.copy_(weight.to(module.head.weight))
    module.head.bias.copy_(bias.to(module.head.bias))
