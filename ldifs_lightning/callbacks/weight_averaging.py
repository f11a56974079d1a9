"""Weight averaging of the trained parameters every N optimizer steps (ZSCL's second half).

:class:`EncoderWeightAveraging` is Lightning's ``WeightAveraging`` restricted to the parameters
the optimizer trains (the image encoder and the head; FLYP's text tower too): frozen copies and
buffers are not averaged, copied or stored twice.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.optim.swa_utils import AveragedModel

#: Checkpoint key of the averaging state: the current (not averaged) trained parameters and
#: how many weights the average holds.
CHECKPOINT_KEY = "encoder_weight_averaging"


class EncoderWeightAveraging(WeightAveraging):
    """Equal-weight average of the trained parameters, taken every ``every_n_steps`` steps.

    The average is updated after optimizer steps ``n, 2n, 3n, ...`` (``n = every_n_steps``):
    Lightning calls :meth:`should_update` after each optimizer step with the zero-based
    ``step_idx = trainer.global_step - 1``, so updates happen when
    ``trainer.global_step % n == 0``, in ``on_train_batch_end`` (after the step and before any
    step-interval checkpoint). Each update adds the weights of that moment with equal weight
    (``AveragedModel``'s default: the mean of all saved weights). Nothing is added at epoch
    ends. At fit end the module holds the average (also during validation, swapped back after);
    if no update happened yet (a fit shorter than ``n`` steps), the module keeps its weights
    and a warning says so.

    Averaged are the parameters that require grad when the fit starts (what AdamW trains: the
    image encoder and the head, FLYP's text tower and ``logit_scale``, a regulariser's own).
    Frozen copies are constant and buffers (LwF's old heads, ZSCL's text embeddings, BatchNorm
    statistics) are the module's own: neither is averaged, which also lets checkpoints keep
    leaving a rebuildable frozen copy out. Checkpoints hold the average in ``state_dict`` (so
    ``load_from_checkpoint`` gives the averaged model, as with Lightning's callback) and the
    current trained parameters plus the count under ``"encoder_weight_averaging"``; resuming
    (``Trainer.fit(ckpt_path=...)``) restores both, so the final average equals the
    uninterrupted run's. Not for ``ModelParallelStrategy`` (sharded parameters).

    Args:
        every_n_steps: Optimizer steps between updates of the average (ZSCL's interval).
        device: Where the average is kept (e.g. ``"cpu"`` to save accelerator memory); None
            keeps it with the module.

    Example:
        >>> averaging = EncoderWeightAveraging(every_n_steps=2)
        >>> [averaging.should_update(step_idx=i) for i in range(4)]
        [False, True, False, True]
    """

    def __init__(self, every_n_steps: int = 100, device: str | None = None) -> None:
        if not (isinstance(every_n_steps, int) and every_n_steps >= 1):
            raise ValueError(
                f"EncoderWeightAveraging: every_n_steps={every_n_steps} must be at least 1 step"
            )
        super().__init__(device=device, use_buffers=False)
        self.every_n_steps = every_n_steps
        self._names: list[str] = []
        self._trained: nn.ParameterList | None = None

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """True after optimizer steps ``n, 2n, ...`` (``step_idx`` is zero-based); never at an
        epoch end."""
        return step_idx is not None and (step_idx + 1) % self.every_n_steps == 0

    @property
    def num_averaged(self) -> int:
        """How many weights the average holds so far (0 before the first update)."""
        return 0 if self._average_model is None else int(self._average_model.n_averaged)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        from lightning.pytorch.strategies import ModelParallelStrategy

        if isinstance(trainer.strategy, ModelParallelStrategy):
            raise ValueError(
                "EncoderWeightAveraging does not run under ModelParallelStrategy (FSDP2): it "
                "averages full parameters; use a single-device or DDP strategy"
            )
        named = [(name, p) for name, p in pl_module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(
                "EncoderWeightAveraging found no trained parameter (is the encoder frozen?): "
                "there is nothing to average"
            )
        self._names = [name for name, _ in named]
        # The module's own parameter objects: the average reads them live at every update.
        self._trained = nn.ParameterList([p for _, p in named])
        device = self._device or pl_module.device
        self._average_model = AveragedModel(self._trained, device=device, use_buffers=False)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx):
            self._averaged().update_parameters(self._trained_parameters())
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """No update at epoch ends: only every ``every_n_steps`` optimizer steps."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.num_averaged == 0:
            rank_zero_warn(
                f"EncoderWeightAveraging: the fit ended after {trainer.global_step} optimizer "
                f"steps, before the first update (every_n_steps={self.every_n_steps}); the "
                "module keeps its trained weights"
            )
            return
        self._copy_average_to_current(pl_module)

    def _averaged(self) -> AveragedModel:
        if self._average_model is None:
            raise RuntimeError("EncoderWeightAveraging has no average outside a fit")
        return self._average_model

    def _trained_parameters(self) -> nn.ParameterList:
        if self._trained is None:
            raise RuntimeError("EncoderWeightAveraging has no average outside a fit")
        return self._trained

    def _average_parameters(self) -> list[torch.Tensor]:
        return list(self._averaged().module.parameters())

    def _swap_models(self, pl_module: LightningModule) -> None:
        """Swap the trained parameters with the average (validation runs on the average)."""
        if self.num_averaged == 0:
            return
        with torch.no_grad():
            for average, current in zip(
                self._average_parameters(), self._trained_parameters(), strict=True
            ):
                kept = current.detach().clone()
                current.copy_(average)
                average.copy_(kept)

    def _copy_average_to_current(self, pl_module: LightningModule) -> None:
        with torch.no_grad():
            for average, current in zip(
                self._average_parameters(), self._trained_parameters(), strict=True
            ):
                current.copy_(average)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """The average goes to ``state_dict``; the current trained parameters next to it."""
        if self._average_model is None:
            return  # outside a fit: the module's weights (the average after a fit) as they are
        state = checkpoint["state_dict"]
        current = {name: state[name] for name in self._names}
        if self.num_averaged > 0:
            for name, average in zip(self._names, self._average_parameters(), strict=True):
                state[name] = average.detach().to(current[name].device).clone()
        checkpoint[CHECKPOINT_KEY] = {
            "current": current,
            "n_averaged": self._averaged().n_averaged.detach().cpu().clone(),
        }

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resume: the stored average into the average model, the current weights into the
        module (which Lightning loaded with the average)."""
        if self._average_model is None:
            return  # not fitting (validate/test): the module keeps the checkpoint's average
        stored = checkpoint.get(CHECKPOINT_KEY)
        if stored is None:
            rank_zero_warn(
                "the checkpoint was not written with EncoderWeightAveraging: the average starts "
                "empty from here"
            )
            return
        if sorted(stored["current"]) != sorted(self._names):
            raise ValueError(
                "the checkpoint's averaged parameters are not the ones this fit trains; resume "
                "with the same module and the same trainable parameters"
            )
        state = checkpoint["state_dict"]
        with torch.no_grad():
            for name, average, current in zip(
                self._names, self._average_parameters(), self._trained_parameters(), strict=True
            ):
                average.copy_(state[name])
                current.copy_(stored["current"][name])
            self._averaged().n_averaged.copy_(stored["n_averaged"])
