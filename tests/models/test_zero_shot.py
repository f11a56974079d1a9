import pytest
import torch
import torch.nn.functional as F

from ldifs_lightning.models import build_zero_shot_head, create_clip, get_tokenizer
from tests.conftest import CLASSNAMES, TEMPLATES, TINY_VIT


def test_head_gives_zero_shot_logits_computed_by_hand():
    clip = create_clip(TINY_VIT).eval()
    tokenizer = get_tokenizer(TINY_VIT)
    head = build_zero_shot_head(clip, tokenizer, CLASSNAMES, TEMPLATES, batch_size=2)

    with torch.no_grad():
        class_embeddings = []
        for name in CLASSNAMES:
            texts = tokenizer([template.format(name) for template in TEMPLATES])
            per_template = F.normalize(clip.encode_text(texts), dim=-1)
            class_embeddings.append(F.normalize(per_template.mean(dim=0), dim=-1))
        text = torch.stack(class_embeddings)
        images = torch.randn(4, 3, 32, 32)
        image = F.normalize(clip.encode_image(images), dim=-1)
        expected = clip.logit_scale.exp() * image @ text.T
        got = head(image)

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(head.bias, torch.zeros(len(CLASSNAMES)))


def test_text_tower_mode_is_restored():
    clip = create_clip(TINY_VIT).train()
    build_zero_shot_head(clip, get_tokenizer(TINY_VIT), CLASSNAMES, TEMPLATES)
    assert clip.training


@pytest.mark.parametrize(
    ("classnames", "templates", "message"),
    [
        ([], TEMPLATES, "classnames is empty"),
        (CLASSNAMES, [], "templates is empty"),
        (CLASSNAMES, ["a photo"], r"template 'a photo' must be a string with exactly one '\{\}'"),
    ],
)
def test_bad_class_names_or_templates(classnames, templates, message):
    clip = create_clip(TINY_VIT)
    with pytest.raises(ValueError, match=message):
        build_zero_shot_head(clip, get_tokenizer(TINY_VIT), classnames, templates)
