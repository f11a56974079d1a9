"""The frozen copy: stored in the autocast dtype, left out of checkpoints and rebuilt on load.

Through the modules that own one: ``LDIFSModule`` (its LDIFS regulariser's copy) and
``FineTuneModule`` with an L2SP regulariser.
"""

import copy
import hashlib

import numpy as np
import open_clip.pretrained
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import LDIFSModule
from ldifs_lightning.models import create_clip
from ldifs_lightning.modules import FineTuneModule
from ldifs_lightning.regularizers import L2SP, FrozenCopy, TrainingStep, l2sp_penalty
from ldifs_lightning.regularizers.frozen_copy import CHECKPOINT_KEY
from ldifs_lightning.regularizers.ldifs import same_matmul_kernels
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT, quiet_trainer

#: Where the first regulariser's frozen copy sits in the state dict, and its checkpoint entry.
STATE_PREFIX = "regularizers.0.reference.encoder."


@pytest.fixture
def weights_file(tmp_path):
    """A rebuildable pre-trained CLIP: random tiny-ViT weights written to a file."""
    path = tmp_path / "pretrained.pt"
    torch.save(create_clip(TINY_VIT).state_dict(), path)
    return path


def _module(pretrained, **overrides) -> LDIFSModule:
    kwargs = dict(model_name=TINY_VIT, pretrained=pretrained, lr=1e-3, warmup_steps=1)
    kwargs.update(overrides)
    return LDIFSModule(CLASSNAMES, TEMPLATES, **kwargs)


def _frozen_copy(module) -> FrozenCopy:
    """The first regulariser's frozen copy (LDIFS's for LDIFSModule)."""
    return module.regularizers[0].reference


def _ldifs_value(module, images: torch.Tensor) -> torch.Tensor:
    """The raw LDIFS value of one batch: the module's encoder forward with its taps recorded."""
    labels = torch.zeros(len(images), dtype=torch.long)
    step = TrainingStep(images, labels, module.image_encoder, module.head)
    step.embedding = module.encode_step(step)
    return module.regularizers[0](step)


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(16, 3, 32, 32, generator=generator)
    return DataLoader(TensorDataset(images, torch.arange(16) % len(CLASSNAMES)), batch_size=8)


def _fit_and_save(module, root, name="model.ckpt", **trainer_kwargs):
    trainer = quiet_trainer(root, **{"max_steps": 2, **trainer_kwargs})
    trainer.fit(module, _loader())
    trainer.save_checkpoint(root / name)
    return root / name


def _expected_sha256(state_dict) -> str:
    """The documented hash, computed through numpy: sorted keys, name, shape, float32 bytes."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        values = state_dict[name].detach().cpu().double().numpy().astype(np.float32)
        digest.update(f"{name}:{values.shape}:torch.float32;".encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def _pretrained_visual(path) -> dict[str, torch.Tensor]:
    return create_clip(TINY_VIT, str(path)).visual.state_dict()


def _assert_same(state, expected):
    assert state.keys() == expected.keys()
    for name, value in state.items():
        assert value.dtype == expected[name].dtype and torch.equal(value, expected[name]), name


def test_checkpoint_leaves_the_copy_out_and_loading_rebuilds_it(tmp_path, weights_file):
    module = _module(str(weights_file))
    path = _fit_and_save(module, tmp_path)

    checkpoint = torch.load(path, weights_only=True)
    assert not [k for k in checkpoint["state_dict"] if k.startswith(STATE_PREFIX)]
    pretrained = _pretrained_visual(weights_file)
    entry = {"sha256": _expected_sha256(pretrained), "stored": False}
    assert checkpoint[CHECKPOINT_KEY] == {STATE_PREFIX: entry}

    loaded = LDIFSModule.load_from_checkpoint(path)
    _assert_same(loaded.reference_encoder.state_dict(), pretrained)
    _assert_same(loaded.state_dict(), module.state_dict())
    images = torch.randn(4, 3, 32, 32)
    distance = _ldifs_value(loaded.train(), images)
    expected = _ldifs_value(module.train(), images)
    assert distance.item() > 0 and torch.equal(distance, expected)


def test_checkpoint_without_the_copy_is_smaller_by_the_copy(tmp_path, weights_file):
    module = _module(str(weights_file))
    trainer = quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(module, _loader())
    trainer.save_checkpoint(tmp_path / "auto.ckpt")
    _frozen_copy(module).checkpoint = "always"
    trainer.save_checkpoint(tmp_path / "always.ckpt")

    state = module.reference_encoder.state_dict()
    copy_bytes = sum(v.numel() * v.element_size() for v in state.values())
    saved = (tmp_path / "always.ckpt").stat().st_size - (tmp_path / "auto.ckpt").stat().st_size
    # The copy's values plus the zip archive's per-tensor records (at most 1 KiB each).
    assert copy_bytes <= saved <= copy_bytes + 1024 * len(state)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_resume_without_the_copy_matches_the_uninterrupted_run(tmp_path, weights_file, precision):
    every_epoch = ModelCheckpoint(tmp_path / "ckpts", save_top_k=-1, every_n_epochs=1)
    epochs = dict(max_steps=-1, max_epochs=2, precision=precision)  # 2 batches per epoch
    full = _module(str(weights_file))
    trainer = quiet_trainer(tmp_path, enable_checkpointing=True, callbacks=[every_epoch], **epochs)
    trainer.fit(full, _loader())
    path = tmp_path / "ckpts" / "epoch=0-step=2.ckpt"
    assert not torch.load(path, weights_only=True)[CHECKPOINT_KEY][STATE_PREFIX]["stored"]

    resumed = _module(str(weights_file))
    trainer = quiet_trainer(tmp_path / "resumed", **epochs)
    trainer.fit(resumed, _loader(), ckpt_path=path)
    assert trainer.global_step == 4
    _assert_same(resumed.state_dict(), full.state_dict())


def test_rebuilt_copy_that_does_not_match_its_hash_fails_in_one_line(tmp_path, weights_file):
    path = _fit_and_save(_module(str(weights_file)), tmp_path)
    expected = torch.load(path, weights_only=True)[CHECKPOINT_KEY][STATE_PREFIX]["sha256"]
    changed = create_clip(TINY_VIT).state_dict()  # other weights under the same file name
    torch.save(changed, weights_file)
    found = _expected_sha256(create_clip(TINY_VIT, str(weights_file)).visual.state_dict())
    assert found != expected

    message = rf"sha256 expected {expected}, found {found}\).*checkpoint_reference='always'"
    with pytest.raises(ValueError, match=message) as error:
        LDIFSModule.load_from_checkpoint(path)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=message):  # resuming with a module built from the file
        quiet_trainer(tmp_path, max_steps=3).fit(
            _module(str(weights_file)), _loader(), ckpt_path=path
        )


def test_rebuilding_from_a_tag_offline_gives_the_download_error(
    tmp_path, weights_file, monkeypatch
):
    path = _fit_and_save(_module(str(weights_file)), tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["pretrained"] = "some-tag"  # as if trained from a tag
    torch.save(checkpoint, path)
    tags = {"some_tag": {"hf_hub": "nobody/tiny-clip/", "quick_gelu": False}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_VIT, tags)

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("ldifs_lightning.models.factory.download_pretrained", offline)
    with pytest.raises(ValueError, match=r"pretrained='some-tag' for .* needs a download from"):
        LDIFSModule.load_from_checkpoint(path)


def test_bf16_mixed_stores_matrices_in_bf16_with_an_unchanged_ldifs_value(tmp_path, weights_file):
    module = _module(str(weights_file))
    pretrained = copy.deepcopy(module.reference_encoder)
    values = []
    module.log = lambda name, value, **kwargs: (
        values.append(value) if name == "train/ldifs" else None
    )
    quiet_trainer(tmp_path, max_steps=1, precision="bf16-mixed").fit(module, _loader())

    for name, parameter in module.reference_encoder.named_parameters():
        expected = torch.bfloat16 if parameter.dim() >= 2 else torch.float32
        assert parameter.dtype == expected, name
        assert torch.equal(parameter, pretrained.get_parameter(name).to(expected)), name
    assert {p.dtype for p in module.image_encoder.parameters()} == {torch.float32}
    assert values[0].item() == 0.0  # identical features before the first update

    # After training, the float32 copy under the same autocast gives the very same value.
    images = torch.randn(4, 3, 32, 32)
    module.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _ldifs_value(module, images)
        _frozen_copy(module).encoder = pretrained
        full = _ldifs_value(module, images)
    assert low.item() > 0 and torch.equal(low, full)


def test_float32_switch_keeps_the_copy_in_float32(tmp_path):
    module = _module(None, reference_dtype="float32")
    quiet_trainer(tmp_path, max_steps=1, precision="bf16-mixed").fit(module, _loader())
    assert {p.dtype for p in module.reference_encoder.parameters()} == {torch.float32}


def test_a_later_float32_fit_gets_the_exact_float32_copy_back(tmp_path, weights_file):
    module = _module(str(weights_file))
    pretrained = copy.deepcopy(module.reference_encoder.state_dict())
    quiet_trainer(tmp_path, max_steps=1, precision="bf16-mixed").fit(module, _loader())
    _assert_same(module.pretrained_encoder().state_dict(), pretrained)  # rebuilt, checked
    quiet_trainer(tmp_path, max_steps=1).fit(module, _loader())
    _assert_same(module.reference_encoder.state_dict(), pretrained)


def test_l2sp_copy_stays_float32_and_its_penalty_survives_the_round_trip(tmp_path, weights_file):
    module = FineTuneModule(
        CLASSNAMES,
        TEMPLATES,
        model_name=TINY_VIT,
        pretrained=str(weights_file),
        regularizers=[L2SP(weight=0.5)],
        lr=1e-3,
        warmup_steps=1,
    )
    pretrained = copy.deepcopy(module.reference_encoder.state_dict())
    path = _fit_and_save(module, tmp_path, precision="bf16-mixed")
    _assert_same(module.reference_encoder.state_dict(), pretrained)
    # L2SP's copy was left out like LDIFS's and is rebuilt from the file on load.
    entry = torch.load(path, weights_only=True)[CHECKPOINT_KEY][STATE_PREFIX]
    assert entry == {"sha256": _expected_sha256(pretrained), "stored": False}

    loaded = FineTuneModule.load_from_checkpoint(path)
    assert [(type(r), r.weight) for r in loaded.regularizers] == [(L2SP, 0.5)]
    _assert_same(loaded.reference_encoder.state_dict(), pretrained)
    expected = sum(
        ((tuned.double() - pretrained[name].double()) ** 2).sum()
        for name, tuned in module.image_encoder.named_parameters()
    )
    penalty = l2sp_penalty(loaded.image_encoder.parameters(), loaded.reference_encoder.parameters())
    assert penalty.item() > 0
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("pretrained_is_file", "overrides"),
    [(False, {}), (True, {"checkpoint_reference": "always"})],
    ids=["random_init", "always"],
)
def test_copy_stays_in_the_checkpoint(tmp_path, weights_file, pretrained_is_file, overrides):
    module = _module(str(weights_file) if pretrained_is_file else None, **overrides)
    pretrained = copy.deepcopy(module.reference_encoder.state_dict())
    path = _fit_and_save(module, tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    # Rebuildable weights are hashed even when stored: the hash proves the stored copy exact.
    sha = _expected_sha256(pretrained) if pretrained_is_file else None
    assert checkpoint[CHECKPOINT_KEY] == {STATE_PREFIX: {"sha256": sha, "stored": True}}
    stored = {
        k.removeprefix(STATE_PREFIX): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(STATE_PREFIX)
    }
    _assert_same(stored, module.reference_encoder.state_dict())
    weights_file.unlink()  # nothing to rebuild from: the weights come from the checkpoint
    _assert_same(LDIFSModule.load_from_checkpoint(path).state_dict(), module.state_dict())


def test_a_replaced_copy_is_kept_in_later_checkpoints(tmp_path, weights_file):
    # As a continual run whose reference is the previous stage's encoder.
    module = _module(str(weights_file))
    previous_stage = copy.deepcopy(module.image_encoder)
    with torch.no_grad():
        for parameter in previous_stage.parameters():
            parameter.add_(0.01)
    module.use_as_reference(previous_stage)
    path = _fit_and_save(module, tmp_path)
    entries = torch.load(path, weights_only=True)[CHECKPOINT_KEY]
    assert entries == {STATE_PREFIX: {"sha256": None, "stored": True}}
    loaded = LDIFSModule.load_from_checkpoint(path)
    _assert_same(loaded.reference_encoder.state_dict(), previous_stage.state_dict())
    resaved = _fit_and_save(loaded, tmp_path / "again")  # still not rebuildable: kept again
    assert torch.load(resaved, weights_only=True)[CHECKPOINT_KEY][STATE_PREFIX]["stored"]


def test_checkpoint_from_before_the_option_loads_its_stored_copy(tmp_path, weights_file):
    module = _module(str(weights_file), checkpoint_reference="always")
    path = _fit_and_save(module, tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint[CHECKPOINT_KEY]
    del checkpoint["hyper_parameters"]["checkpoint_reference"]
    torch.save(checkpoint, path)
    _assert_same(LDIFSModule.load_from_checkpoint(path).state_dict(), module.state_dict())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"reference_dtype": "bf16"},
            r"reference_dtype='bf16' is not one of \['auto', 'float32'\]",
        ),
        ({"checkpoint_reference": "never"}, r"checkpoint_reference='never' is not one of"),
    ],
)
def test_bad_switch_values_fail_in_one_line(overrides, message):
    with pytest.raises(ValueError, match=message):
        _module(None, **overrides)


def test_always_after_bf16_fit_keeps_exact_weights_in_memory_and_on_load(tmp_path, weights_file):
    module = _module(str(weights_file), checkpoint_reference="always")
    pretrained = copy.deepcopy(module.reference_encoder.state_dict())
    path = _fit_and_save(module, tmp_path, precision="bf16-mixed")
    assert module.reference_encoder.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    _assert_same(module.pretrained_encoder().state_dict(), pretrained)  # rebuilt, not upcast

    loaded = LDIFSModule.load_from_checkpoint(path)  # the stored copy is rounded: rebuilt
    _assert_same(loaded.reference_encoder.state_dict(), pretrained)

    weights_file.unlink()  # offline: cannot rebuild, so the rounded copy is used, with a warning
    with pytest.warns(UserWarning, match="could not be rebuilt"):
        offline = LDIFSModule.load_from_checkpoint(path)
    rounded = offline.reference_encoder.transformer.resblocks[0].mlp.c_fc.weight
    exact = pretrained["transformer.resblocks.0.mlp.c_fc.weight"]
    assert not torch.equal(rounded, exact)
    assert torch.equal(rounded, exact.to(torch.bfloat16).float())
    assert _frozen_copy(offline).sha256 is None  # no longer claims to be the exact weights


def test_use_as_reference_after_a_bf16_fit_keeps_the_new_weights_exactly(tmp_path, weights_file):
    module = _module(str(weights_file))
    quiet_trainer(tmp_path, max_steps=1, precision="bf16-mixed").fit(module, _loader())
    stage = copy.deepcopy(module.image_encoder)
    module.use_as_reference(stage)
    _assert_same(module.reference_encoder.state_dict(), stage.state_dict())
    _assert_same(module.pretrained_encoder().state_dict(), stage.state_dict())


def test_frozen_forward_does_not_fill_the_autocast_cache():
    """Flagging frozen float32 weights as requiring grad must not make autocast keep bf16 casts
    of them until the step's autocast exits (a second copy of the frozen weights)."""
    module = _module(None, reference_dtype="float32")
    images = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_cache_enabled()
        with same_matmul_kernels(module.reference_encoder):
            assert not torch.is_autocast_cache_enabled()
            module.reference_encoder(images)
        assert torch.is_autocast_cache_enabled()
    assert all(not p.requires_grad for p in module.reference_encoder.parameters())
