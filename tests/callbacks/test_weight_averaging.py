"""EncoderWeightAveraging: the mean of the weights at steps n, 2n, ...; checkpoints and resume."""

import copy

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from ldifs_lightning import FineTuneModule
from ldifs_lightning.callbacks import EncoderWeightAveraging
from ldifs_lightning.callbacks.weight_averaging import CHECKPOINT_KEY
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.regularizers import LDIFS
from tests.conftest import TINY_VIT, quiet_trainer

EVERY = 2
STEPS_PER_EPOCH = 4  # 64 training images, batches of 16


class _Recorder(Callback):
    """Copies the trained weights after every optimizer step whose global_step is a multiple
    of EVERY: the steps at which the average is updated (steps 2, 4, 6, 8)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % EVERY == 0:
            self.steps.append(trainer.global_step)
            self.weights.append(_trained(pl_module))


class _ValidationWatcher(Callback):
    """The weights validation runs on, and those training continues from afterwards."""

    def __init__(self) -> None:
        self.validated: list[dict[str, torch.Tensor]] = []
        self.epoch_starts: list[dict[str, torch.Tensor]] = []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *args) -> None:
        if batch_idx == 0:
            self.validated.append(_trained(pl_module))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_starts.append(_trained(pl_module))


def _trained(module: FineTuneModule) -> dict[str, torch.Tensor]:
    state = {f"image_encoder.{k}": v for k, v in module.image_encoder.state_dict().items()}
    state.update({f"head.{k}": v for k, v in module.head.state_dict().items()})
    return copy.deepcopy(state)


def _mean(records: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: sum(r[k].double() for r in records) / len(records) for k in records[0]}


def _assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    for name, value in expected.items():
        torch.testing.assert_close(actual[name].double(), value, rtol=0, atol=1e-6, msg=name)


def _data() -> FineTuneDataModule:
    return FineTuneDataModule(
        "shapes", image_size=32, batch_size=16, max_train_samples=64, max_test_samples=32
    )


def _module(data: FineTuneDataModule, **overrides) -> FineTuneModule:
    kwargs = dict(model_name=TINY_VIT, pretrained="demo", lr=1e-2, warmup_steps=1)
    kwargs.update(overrides)
    return FineTuneModule(data.classnames, data.templates, **kwargs)


def _fit(root, module, data, callbacks, ckpt_path=None, **trainer_args) -> None:
    kwargs = dict(max_steps=-1, max_epochs=2, limit_val_batches=0, num_sanity_val_steps=0)
    kwargs.update(trainer_args)
    trainer = quiet_trainer(root, callbacks=callbacks, **kwargs)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)


def test_the_fit_ends_with_the_mean_of_the_weights_at_every_nth_step(tmp_path):
    data = _data()
    module = _module(data)
    recorder, watcher = _Recorder(), _ValidationWatcher()
    averaging = EncoderWeightAveraging(every_n_steps=EVERY)
    _fit(tmp_path, module, data, [recorder, averaging, watcher], limit_val_batches=1)

    assert recorder.steps == [2, 4, 6, 8]
    assert averaging.num_averaged == 4
    final = _trained(module)
    _assert_close(final, _mean(recorder.weights))
    # Validation after epoch 0 ran on the average of steps 2 and 4; epoch 1 then went on from
    # the weights of step 4.
    _assert_close(watcher.validated[0], _mean(recorder.weights[:2]))
    _assert_close(watcher.epoch_starts[1], _mean(recorder.weights[1:2]))
    # The average is not simply the last weights: the test can tell them apart.
    name = "image_encoder.conv1.weight"
    assert not torch.allclose(final[name], recorder.weights[-1][name], atol=1e-6)


# The resumed fit continues the same run, into the same checkpoint folder.
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_a_resumed_fit_averages_as_the_uninterrupted_one(tmp_path):
    data = _data()
    # LDIFS's frozen copy: constant, neither averaged nor stored (it is rebuildable).
    uninterrupted = _module(data, regularizers=[LDIFS(weight=1.0)])
    recorder = _Recorder()
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    _fit(
        tmp_path,
        uninterrupted,
        data,
        [recorder, EncoderWeightAveraging(every_n_steps=EVERY), checkpoints],
        enable_checkpointing=True,
    )

    # After epoch 0 (steps 1-4) the checkpoint's state_dict is the mean of steps 2 and 4 and
    # its averaging entry the current weights of step 4.
    path = tmp_path / "ckpt" / "epoch=0.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert recorder.steps[:2] == [2, 4]
    _assert_close(checkpoint["state_dict"], _mean(recorder.weights[:2]))
    _assert_close(checkpoint[CHECKPOINT_KEY]["current"], _mean(recorder.weights[1:2]))
    assert int(checkpoint[CHECKPOINT_KEY]["n_averaged"]) == 2
    assert not any("reference" in key for key in checkpoint["state_dict"])
    assert not any("reference" in key for key in checkpoint[CHECKPOINT_KEY]["current"])
    # A module loaded from the uninterrupted run's last checkpoint holds the average.
    loaded = FineTuneModule.load_from_checkpoint(tmp_path / "ckpt" / "epoch=1.ckpt")
    _assert_close(_trained(loaded), _mean(recorder.weights))

    resumed = _module(data, regularizers=[LDIFS(weight=1.0)])
    _fit(
        tmp_path / "resumed",
        resumed,
        data,
        [
            EncoderWeightAveraging(every_n_steps=EVERY),
            ModelCheckpoint(tmp_path / "ckpt", filename="{epoch}", save_top_k=-1),
        ],
        ckpt_path=path,
        enable_checkpointing=True,
    )
    _assert_close(_trained(resumed), _mean(recorder.weights))
    expected = _trained(uninterrupted)
    for name, value in _trained(resumed).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)


def test_a_fit_shorter_than_the_interval_keeps_its_weights(tmp_path):
    data = _data()
    module = _module(data)
    before = _trained(module)
    with pytest.warns(UserWarning, match="before the first update"):
        _fit(tmp_path, module, data, [EncoderWeightAveraging(every_n_steps=5)], max_epochs=1)
    # Not put back to the weights the fit started from (the empty average's).
    assert not torch.equal(_trained(module)["head.weight"], before["head.weight"])


@pytest.mark.parametrize("every_n_steps", [0, -3])
def test_an_interval_below_one_step_is_refused(every_n_steps):
    with pytest.raises(ValueError, match=rf"every_n_steps={every_n_steps} must be at least 1"):
        EncoderWeightAveraging(every_n_steps=every_n_steps)
