import hashlib

import numpy as np

from ldifs_lightning.data.domains.shapes import SHAPE_CLASSNAMES, generate_shapes


def test_same_seed_gives_identical_bytes():
    a_images, a_labels = generate_shapes(40, seed=3)
    b_images, b_labels = generate_shapes(40, seed=3)
    assert (
        hashlib.sha256(a_images.tobytes()).digest() == hashlib.sha256(b_images.tobytes()).digest()
    )
    assert np.array_equal(a_labels, b_labels)
    assert not np.array_equal(generate_shapes(40, seed=4)[0], a_images)


def test_balanced_and_shaped():
    images, labels = generate_shapes(80, seed=0)
    assert images.shape == (80, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [10] * len(SHAPE_CLASSNAMES)
