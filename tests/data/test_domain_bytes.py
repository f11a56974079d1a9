"""The generated domains keep their exact bytes across refactors of the code that draws them.

The digests were recorded from the arrays generated before the shapes domain moved into
``data/domains/`` and its drawing steps were shared with the glyph renderer and the textures
(commit 4df8ee3, numpy 2.4.6, Pillow 13.0.0). Every byte matters: the shipped demo model and its
model card were measured on these images. Another numpy or Pillow release may change them
legitimately; then re-record the digests and re-measure the card
(``python -m ldifs_lightning.pretrained.build --card``).
"""

import hashlib

import numpy as np
import pytest

from ldifs_lightning.data.domains import domain_arrays
from ldifs_lightning.data.domains.render import render_glyphs
from ldifs_lightning.data.domains.shapes import generate_shapes
from ldifs_lightning.data.domains.textures import generate_textures

#: (domain, split) -> sha256 of (images, labels).
SPLIT_DIGESTS = {
    ("digits", "train"): (
        "211bdd5f371db80a2492ce976dee9bc1fb0d33e4a973972e4513371441661589",
        "5bfed51a7fcb875b0a8795788ea960c1d96b4323d3487619735022642cb13691",
    ),
    ("digits", "test"): (
        "39de06acc17027b7b6e3d4bfe8ec1e7889509204a338439d15d5ea293c027cb0",
        "c5e19a96c5ab70dad8860f97aca29124d5f8b89a4211269ada098515e8b243f4",
    ),
    ("fashion", "train"): (
        "af47e2f1f290ae16647dd5979fb5469c37658cef3bf23fc179785f03054a3b90",
        "6a14ad0840fe618c4091f9fa3c4cdd522a5a47d94ce539a48d46264ebf02153f",
    ),
    ("fashion", "test"): (
        "f0939cc088ad932d87bda45d715c0c47c3636e4166784de67796112240864c21",
        "bf801567046a882a2ee562ad45bac1c2bf9b3fb7b63f28f39d636b068ed9afd5",
    ),
    ("shapes", "train"): (
        "2274b252f01e7fcc17ec99b65cb867f297eda238b5413d3bfbda1c23709d6566",
        "ea27f0d99bc1e0af4ad66cdc3814892664be83b6e64c1e3d36a7cac5be96fc74",
    ),
    ("shapes", "test"): (
        "64ab47e4d9fd4c638374ba283354518cce7779fde3497b8f0e76525e40a59848",
        "527d176d33a3389a05c868aefbdd1131ace3dcd9bb8514132566c57a1b2a8d10",
    ),
    ("textures", "train"): (
        "5d68a78c2a1fcaa977654a0ef97e9d415c321778474fe6ef5ac0bcc658f1311a",
        "ea27f0d99bc1e0af4ad66cdc3814892664be83b6e64c1e3d36a7cac5be96fc74",
    ),
    ("textures", "test"): (
        "3082fb6ef6b3c65e8eef80695aba89fd8e7f31dc8be7dee62897823b62033078",
        "527d176d33a3389a05c868aefbdd1131ace3dcd9bb8514132566c57a1b2a8d10",
    ),
}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize(("domain", "split"), list(SPLIT_DIGESTS))
def test_domain_split_bytes_are_unchanged(domain, split):
    images, labels = domain_arrays(domain, split)
    assert (_digest(images), _digest(labels)) == SPLIT_DIGESTS[domain, split]


def test_generators_keep_their_bytes_off_the_default_settings():
    images, labels = generate_shapes(40, seed=3, image_size=24)
    assert _digest(images) == "deefc99c606b16bac7831b5af3b89acf86f15ce5aef1919ff039ddf99351c877"
    assert _digest(labels) == "f94878aca2a70801560925406abbe8c3e46a2da03ba21142ac6a7876e9620008"
    glyphs = np.random.default_rng(0).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    rendered = render_glyphs(glyphs, seed=1, image_size=24, noise=5.0, max_clutter=5)
    assert _digest(rendered) == "4d4259920377be6fa22b54166bf3490df0d3dc27070d193e458c41eccde9f99d"
    images, labels = generate_textures(24, seed=5, image_size=40)
    assert _digest(images) == "982e1be1b71ce62be8fa43825345917d341f4143bee28a7024c2bb5c9b9479e1"
    assert _digest(labels) == "dc3205eab6d5ae21629ff7dabac7202725d22c6b21761a86602890b1c9d4470a"
