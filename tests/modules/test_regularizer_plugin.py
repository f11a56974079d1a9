"""A regulariser written outside the package plugs in by class_path and trains.

``CosineFeatureSimilarity`` is the worked example of docs/architecture.md, line for line.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import FineTuneModule
from ldifs_lightning.regularizers import FrozenCopy, Regularizer, TrainingStep
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT, quiet_trainer

REPO = Path(__file__).resolve().parents[2]


class CosineFeatureSimilarity(Regularizer):
    """1 - cosine similarity of the trainable and the frozen pre-trained image embeddings."""

    name = "cosine"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.reference: FrozenCopy | None = None

    def bind(self, encoder, source) -> None:
        self.reference = FrozenCopy(encoder, source)

    def before_forward(self, step: TrainingStep) -> None:
        with torch.no_grad():
            self._target = self.reference(step.images)

    def forward(self, step: TrainingStep) -> torch.Tensor:
        return 1 - F.cosine_similarity(step.embedding, self._target, dim=-1).mean()


def _module(**overrides) -> FineTuneModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=None, lr=1e-2, warmup_steps=1)
    kwargs.update(overrides)
    return FineTuneModule(CLASSNAMES, TEMPLATES, **kwargs)


def test_value_is_one_minus_the_cosine_written_out():
    module = _module(regularizers=[CosineFeatureSimilarity(weight=2.0)])
    frozen = {k: v.clone() for k, v in module.image_encoder.state_dict().items()}
    with torch.no_grad():
        for p in module.image_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.detach())
    loss = module.training_step((images, labels), 0)

    module.image_encoder.eval()
    copy = _module()
    copy.image_encoder.load_state_dict(frozen)
    with torch.no_grad():
        a, b = module.image_encoder(images), copy.image_encoder.eval()(images)
    cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    expected = 1 - cosine.mean()
    assert expected > 1e-4
    torch.testing.assert_close(logged["train/cosine"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss.detach(), logged["train/ce"] + 2.0 * logged["train/cosine"])


def test_trains_with_its_copy_frozen_and_outside_the_optimizer(tmp_path):
    term = CosineFeatureSimilarity(weight=1.0)
    module = _module(regularizers=[term])
    frozen_before = {k: v.clone() for k, v in term.reference.state_dict().items()}
    data = TensorDataset(torch.randn(16, 3, 32, 32), torch.arange(16) % len(CLASSNAMES))
    trainer = quiet_trainer(tmp_path, max_steps=4)
    trainer.fit(module, DataLoader(data, batch_size=8))
    assert trainer.callback_metrics["train/cosine"] > 0  # the encoder moved away
    for name, value in term.reference.state_dict().items():
        assert torch.equal(value, frozen_before[name]), name
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in term.reference.parameters()}


def test_ldifs_command_plugs_it_in_by_class_path(tmp_path):
    """Through the installed ``ldifs`` executable, as a user's YAML would name it."""
    config = tmp_path / "cosine.yaml"
    config.write_text(
        "model:\n"
        "  class_path: ldifs_lightning.FineTuneModule\n"
        "  init_args:\n"
        "    model_name: ldifs-tiny-vit\n"
        "    pretrained: demo\n"
        "    lr: 1.0e-3\n"
        "    warmup_steps: 1\n"
        "    regularizers:\n"
        "      - class_path: tests.modules.test_regularizer_plugin.CosineFeatureSimilarity\n"
        "        init_args:\n"
        "          weight: 5.0\n"
        "data:\n"
        "  class_path: ldifs_lightning.data.FineTuneDataModule\n"
        "  init_args:\n"
        "    dataset: shapes\n"
        "    image_size: 32\n"
        "    batch_size: 8\n"
        "    max_train_samples: 16\n"
        "    max_val_samples: 8\n"
    )
    ldifs = Path(sys.executable).with_name("ldifs")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(ldifs), "fit", "--config", str(config), "--trainer.max_steps", "2",
         "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path / "run"),
         "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    saved = (tmp_path / "run" / "lightning_logs" / "version_0" / "config.yaml").read_text()
    assert "tests.modules.test_regularizer_plugin.CosineFeatureSimilarity" in saved
    metrics = (tmp_path / "run" / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "train/cosine" in metrics.splitlines()[0]
