"""Default LDIFS taps for open_clip towers built on timm trunks: SigLIP, EVA02, ConvNeXt.

Each family is tested on a tiny copy of the real model: the open_clip config mirrors the real
``vision_cfg`` (pool, projection, ``custom_text``), and the timm trunk is built by the real model's
own timm entry point with smaller sizes, registered in timm under a test name. Nothing is
downloaded (``timm_model_pretrained: false``, ``pretrained=None``). The real configs are checked on
the meta device (shapes only, no weights, no compute).
"""

import json
import math
from typing import Any

import open_clip
import pytest
import torch
from open_clip.model import CLIPVisionCfg
from open_clip.timm_model import TimmModel
from timm.models import register_model
from timm.models.convnext import ConvNeXt, convnext_base
from timm.models.eva import Eva, eva02_base_patch16_clip_224
from timm.models.vision_transformer import VisionTransformer, vit_base_patch16_siglip_224
from torch.utils.data import DataLoader, TensorDataset

from ldifs_lightning import LDIFSModule
from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.export import export_open_clip
from ldifs_lightning.models import (
    FeatureTaps,
    create_clip,
    default_tap_names,
    register_model_config,
)
from ldifs_lightning.models.factory import embed_dim_of
from ldifs_lightning.regularizers import TrainingStep
from tests.conftest import CLASSNAMES, TEMPLATES, quiet_trainer

IMAGE_SIZE = 32


# Tiny trunks from the real entry points: only sizes change, every architectural switch (no class
# token + MAP pooling for SigLIP; RoPE, SwiGLU, sub-LN for EVA02) stays as in the real model.
@register_model
def ldifs_test_siglip(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    sizes = dict(img_size=IMAGE_SIZE, patch_size=8, embed_dim=32, depth=6, num_heads=2)
    return vit_base_patch16_siglip_224(pretrained=False, **{**sizes, **kwargs})


@register_model
def ldifs_test_eva02(pretrained: bool = False, **kwargs: Any) -> Eva:
    sizes = dict(
        img_size=IMAGE_SIZE, patch_size=8, embed_dim=32, depth=5, num_heads=2, ref_feat_shape=(4, 4)
    )
    return eva02_base_patch16_clip_224(pretrained=False, **{**sizes, **kwargs})


@register_model
def ldifs_test_convnext(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    # Channel counts differ from the spatial sizes (8, 4, 2, 1) so NCHW and NHWC cannot coincide.
    sizes = dict(depths=(1, 1, 2, 1), dims=(12, 20, 28, 36))
    return convnext_base(pretrained=False, **{**sizes, **kwargs})


_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}

# name -> open_clip config mirroring ViT-B-16-SigLIP, EVA02-B-16 and convnext_base. The text
# towers use open_clip's default tokenizer: it picks SigLIP's sentencepiece tokenizer (which needs
# transformers and a download) for any model name containing "siglip", hence "timm-vit".
CONFIGS: dict[str, dict[str, Any]] = {
    "ldifs-test-timm-vit": {
        "embed_dim": 32,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": IMAGE_SIZE,
            "timm_model_name": "ldifs_test_siglip",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {**_TEXT, "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
    },
    "ldifs-test-timm-eva02": {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {
            "image_size": IMAGE_SIZE,
            "timm_model_name": "ldifs_test_eva02",
            "timm_model_pretrained": False,
            "timm_pool": "token",
            "timm_proj": None,
        },
        "text_cfg": _TEXT,
    },
    "ldifs-test-timm-convnext": {
        "embed_dim": 32,
        # convnext_base trains with timm_drop_path 0.1; stochastic depth is left out here so
        # that the trainable encoder (train mode) equals the frozen copy (eval mode) at step 0.
        "vision_cfg": {
            "image_size": IMAGE_SIZE,
            "timm_model_name": "ldifs_test_convnext",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "timm_drop": 0.0,
        },
        "text_cfg": _TEXT,
    },
}

# The depth rule by hand: blocks ceil(k * L / 4), k = 1..4, as 0-based indices.
# L = 6: 2, 3, 5, 6 -> 1, 2, 4, 5; L = 5: 2, 3, 4, 5 -> 1, 2, 3, 4.
EXPECTED_TAPS = {
    "ldifs-test-timm-vit": ["trunk.norm_pre", *(f"trunk.blocks.{i}" for i in (1, 2, 4, 5))],
    "ldifs-test-timm-eva02": ["trunk.norm_pre", *(f"trunk.blocks.{i}" for i in (1, 2, 3, 4))],
    "ldifs-test-timm-convnext": ["trunk.stem", *(f"trunk.stages.{i}" for i in range(4))],
}
TOKENS = {
    "ldifs-test-timm-vit": 16,
    "ldifs-test-timm-eva02": 17,
}  # 4x4 patches (+ EVA's class token)
CONVNEXT_SHAPES = [(64, 12), (64, 12), (16, 20), (4, 28), (1, 36)]  # (H*W, C) of each tap


@pytest.fixture(scope="module", autouse=True)
def _tiny_configs(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("model_configs")
    for name, config in CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(config))
    assert sorted(register_model_config(folder)) == sorted(CONFIGS)


def _images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE)


def _module(model_name: str, **overrides: Any) -> LDIFSModule:
    kwargs = dict(model_name=model_name, pretrained=None, lr=1e-2, warmup_steps=1)
    kwargs.update(overrides)
    return LDIFSModule(CLASSNAMES, TEMPLATES, **kwargs)


# --------------------------------------------------------------------------- real architectures
# The real B-size towers at 224 px: 12 blocks (taps 3, 6, 9, 12), 16x16 patches, ConvNeXt-B's
# stride-4 stem and stages of 128, 256, 512, 1024 channels.
REAL_VIT_TAPS = ["trunk.norm_pre", *(f"trunk.blocks.{i}" for i in (2, 5, 8, 11))]
REAL_CONVNEXT_TAPS = ["trunk.stem", *(f"trunk.stages.{i}" for i in range(4))]
REAL_CONVNEXT_SHAPES = [
    (2, 56 * 56, 128),
    (2, 56 * 56, 128),
    (2, 28 * 28, 256),
    (2, 14 * 14, 512),
    (2, 7 * 7, 1024),
]


@pytest.mark.parametrize(
    ("model_name", "taps", "shapes"),
    [
        ("ViT-B-16-SigLIP", REAL_VIT_TAPS, [(2, 14 * 14, 768)] * 5),  # no class token
        ("EVA02-B-16", REAL_VIT_TAPS, [(2, 1 + 14 * 14, 768)] * 5),  # class token + patches
        ("convnext_base", REAL_CONVNEXT_TAPS, REAL_CONVNEXT_SHAPES),
    ],
)
def test_real_timm_towers_get_default_taps_in_positions_channels_layout(model_name, taps, shapes):
    config = open_clip.get_model_config(model_name)
    vision = CLIPVisionCfg(**config["vision_cfg"])
    with torch.device("meta"):  # the real B-size tower, without allocating or computing anything
        encoder = TimmModel(
            vision.timm_model_name,
            config["embed_dim"],
            image_size=vision.image_size,
            pool=vision.timm_pool,
            proj=vision.timm_proj,
            proj_bias=vision.timm_proj_bias,
        ).eval()
        assert default_tap_names(encoder) == taps
        with FeatureTaps(encoder) as recorded:
            encoder(torch.empty(2, 3, 224, 224))
    assert [tuple(f.shape) for f in recorded.features()] == shapes


# --------------------------------------------------------------------------- tiny families
@pytest.mark.parametrize("model_name", list(CONFIGS))
def test_default_taps_follow_the_depth_rule(model_name):
    encoder = create_clip(model_name).visual
    assert isinstance(encoder, TimmModel)
    if model_name in TOKENS:
        depth = len(encoder.trunk.blocks)
        rule = [math.ceil(k * depth / 4) - 1 for k in range(1, 5)]
        assert EXPECTED_TAPS[model_name][1:] == [f"trunk.blocks.{i}" for i in rule]
    assert default_tap_names(encoder) == EXPECTED_TAPS[model_name]


@pytest.mark.parametrize("model_name", ["ldifs-test-timm-vit", "ldifs-test-timm-eva02"])
def test_vit_like_taps_are_embeddings_and_block_outputs(model_name):
    encoder = create_clip(model_name).visual.eval()
    trunk, images = encoder.trunk, _images()
    with torch.no_grad(), FeatureTaps(encoder) as recorded:
        embedding = encoder(images)
    features = recorded.features()
    assert [tuple(f.shape) for f in features] == [(3, TOKENS[model_name], 32)] * 5

    # ln_pre's analogue: patch embeddings (+ class token) plus position embeddings, computed here.
    with torch.no_grad():
        tokens = trunk.patch_embed(images)
        if trunk.cls_token is not None:
            tokens = torch.cat([trunk.cls_token.expand(len(images), -1, -1), tokens], dim=1)
        torch.testing.assert_close(features[0], tokens + trunk.pos_embed)

        blocks = [int(name.rsplit(".", 1)[1]) for name in EXPECTED_TAPS[model_name][1:]]
        reference = encoder.forward_intermediates(
            images, indices=blocks, output_fmt="NLC", output_extra_tokens=True
        )
    prefixes = reference.get("image_intermediates_prefix", [None] * len(blocks))
    for tap, patches, prefix in zip(
        features[1:], reference["image_intermediates"], prefixes, strict=True
    ):
        expected = patches if prefix is None else torch.cat([prefix, patches], dim=1)
        torch.testing.assert_close(tap, expected)
    torch.testing.assert_close(embedding, reference["image_features"])


def test_convnext_taps_are_nchw_maps_flattened_to_positions_channels():
    encoder = create_clip("ldifs-test-timm-convnext").visual.eval()
    images = _images()
    with torch.no_grad(), FeatureTaps(encoder) as recorded:
        encoder(images)
    features = recorded.features()
    assert [tuple(f.shape) for f in features] == [(3, p, c) for p, c in CONVNEXT_SHAPES]
    with torch.no_grad():
        stem = encoder.trunk.stem(images)
        stages = encoder.forward_intermediates(images, indices=[0, 1, 2, 3], output_fmt="NCHW")
    for tap, nchw in zip(features, [stem, *stages["image_intermediates"]], strict=True):
        h, w = nchw.shape[2:]
        # position p = y * W + x holds the C channels of pixel (y, x)
        for y, x in [(0, 0), (h - 1, w - 1), (h // 2, w // 3)]:
            torch.testing.assert_close(tap[:, y * w + x, :], nchw[:, :, y, x])


# ------------------------------------------------------------------- LDIFS, callback, export
@pytest.mark.parametrize("model_name", list(CONFIGS))
def test_ldifs_is_zero_at_step_zero_and_positive_after_a_training_step(model_name, tmp_path):
    module = _module(model_name)
    assert module.tap_names == EXPECTED_TAPS[model_name]
    images = _images(4)

    def ldifs_value() -> float:
        step = TrainingStep(images, torch.zeros(4), module.image_encoder, module.head)
        step.embedding = module.train().encode_step(step)
        return module.regularizers[0](step).item()

    assert ldifs_value() == 0.0
    data = TensorDataset(_images(8), torch.arange(8) % len(CLASSNAMES))
    quiet_trainer(tmp_path, max_steps=1).fit(module, DataLoader(data, batch_size=8))
    assert ldifs_value() > 0.0


@pytest.mark.parametrize("model_name", list(CONFIGS))
def test_forgetting_callback_and_export_work_unchanged(model_name, tmp_path):
    data = FineTuneDataModule("shapes", image_size=IMAGE_SIZE, batch_size=16, max_train_samples=32)
    module = LDIFSModule(
        data.classnames,
        data.templates,
        model_name=model_name,
        pretrained=None,
        lr=1e-3,
        warmup_steps=1,
    )
    callback = ConceptForgettingCallback(
        suite=["shapes"],
        cache_dir=str(tmp_path / "cache"),
        batch_size=16,
        max_train_samples=48,
        max_test_samples=32,
    )
    trainer = quiet_trainer(
        tmp_path, max_steps=-1, fast_dev_run=1, callbacks=[callback], limit_val_batches=1
    )
    trainer.fit(module, datamodule=data)
    logged = trainer.callback_metrics
    for key in ["lp_acc", "zs_acc", "delta_lp", "delta_zs"]:
        assert math.isfinite(logged[f"forgetting/shapes/{key}"].item()), key

    out = export_open_clip(module.eval(), tmp_path / "exported")
    clip = open_clip.create_model(f"local-dir:{out}").eval()
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(images), module.image_encoder(images))


@pytest.mark.parametrize("model_name", [*CONFIGS, "ldifs-tiny-vit"])
def test_embed_dim_of_custom_text_and_plain_clip(model_name):
    # ldifs-test-timm-vit: CustomTextCLIP, text projection an nn.Linear (proj_bias); eva02:
    # CustomTextCLIP with a projection matrix; convnext and ldifs-tiny-vit: CLIP with a matrix.
    clip = create_clip(model_name).eval()
    with torch.no_grad():
        width = clip.encode_text(open_clip.get_tokenizer(model_name)(["a photo."])).shape[1]
    assert embed_dim_of(clip) == width == 32


# --------------------------------------------------------------------------- errors
def test_channels_last_output_at_a_convnext_tap_is_rejected():
    encoder = create_clip("ldifs-test-timm-convnext").visual
    encoder.trunk.stem.register_forward_hook(lambda m, args, out: out.permute(0, 2, 3, 1))
    with FeatureTaps(encoder, ["trunk.stem"]) as recorded:
        encoder.trunk.stem(_images())  # NHWC [3, 8, 8, 12] after the hook above
    with pytest.raises(
        ValueError,
        match=r"tap 'trunk\.stem' of TimmModel \(timm ConvNeXt trunk\) output shape "
        r"\(3, 8, 8, 12\), expected an NCHW map \[N, 12, H, W\]",
    ):
        recorded.features()


def test_sequence_first_tokens_are_rejected():
    encoder = create_clip("ldifs-test-timm-vit").visual.eval()
    last = encoder.trunk.blocks[-1]
    last.register_forward_hook(lambda m, args, out: out.transpose(0, 1))  # [T, N, C] from here
    with FeatureTaps(encoder, ["trunk.blocks.5"]) as recorded, torch.no_grad():
        encoder(_images(3))
    with pytest.raises(
        ValueError,
        match=r"tap 'trunk\.blocks\.5' output shape \(16, 3, 32\) does not start with the batch "
        r"size 3",
    ):
        recorded.features()


def test_unknown_timm_family_lists_module_names_and_accepts_explicit_taps():
    encoder = TimmModel("test_resnet", embed_dim=8, image_size=IMAGE_SIZE).eval()
    with pytest.raises(
        ValueError,
        match=r"^no default taps for TimmModel \(timm ResNet trunk\); pass taps= with module "
        r"names from: trunk, trunk\.conv1, .*trunk\.layer2",
    ) as error:
        default_tap_names(encoder)
    assert "\n" not in str(error.value)
    with FeatureTaps(encoder, ["trunk.layer1"]) as recorded, torch.no_grad():
        encoder(_images(2))
    (feature,) = recorded.features()
    # test_resnet's layer1 has reduction 4 (8x8 positions) and 32 channels
    assert feature.shape == (2, 8 * 8, encoder.trunk.feature_info[1]["num_chs"]) == (2, 64, 32)
