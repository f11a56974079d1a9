"""The demo's embedded domains: deterministic, balanced, registered, shipped files checksummed."""

import hashlib
import shutil

import numpy as np
import pytest

from ldifs_lightning.data import FineTuneDataModule, get_dataset_info, list_datasets
from ldifs_lightning.data.domains import FILES, MIX_DOMAINS, domain_arrays, mix_classes
from ldifs_lightning.data.domains.render import render_glyphs
from ldifs_lightning.data.domains.textures import TEXTURE_CLASSNAMES, generate_textures
from ldifs_lightning.pretrained import (
    ShippedFileError,
    expected_checksums,
    sha256_of,
    verify_shipped_file,
)

DOMAINS = ["digits", "fashion", "textures"]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def test_registered_with_names_and_templates():
    for name in [*MIX_DOMAINS, "demo-mix"]:
        assert name in list_datasets()
        info = get_dataset_info(name)
        assert info.classnames and all(t.count("{}") == 1 for t in info.templates)
        assert len(info.classnames) <= 10 or name == "demo-mix"


def test_texture_generator_is_deterministic_and_balanced():
    a, labels = generate_textures(48, seed=5)
    b, _ = generate_textures(48, seed=5)
    assert _digest(a) == _digest(b)
    assert _digest(generate_textures(48, seed=6)[0]) != _digest(a)
    assert a.shape == (48, 32, 32, 3) and a.dtype == np.uint8
    assert np.bincount(labels).tolist() == [6] * len(TEXTURE_CLASSNAMES)


def test_glyph_renderer_is_deterministic():
    glyphs = np.random.default_rng(0).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    assert _digest(render_glyphs(glyphs, seed=1)) == _digest(render_glyphs(glyphs, seed=1))
    assert _digest(render_glyphs(glyphs, seed=2)) != _digest(render_glyphs(glyphs, seed=1))


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_splits_are_balanced_rgb_and_stable(domain):
    for split in ("train", "test"):
        images, labels = domain_arrays(domain, split)
        assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
        counts = np.bincount(labels, minlength=len(get_dataset_info(domain).classnames))
        assert counts.min() == counts.max() > 0
        assert not images.flags.writeable  # cached arrays are shared: read-only
    # The cache is bypassed: regenerating gives the same bytes.
    first = _digest(domain_arrays(domain, "test")[0])
    domain_arrays.cache_clear()
    assert _digest(domain_arrays(domain, "test")[0]) == first


def test_train_and_test_do_not_share_images():
    for domain in DOMAINS:
        train = {_digest(x) for x in domain_arrays(domain, "train")[0]}
        test = {_digest(x) for x in domain_arrays(domain, "test")[0]}
        assert not train & test


def test_demo_mix_offsets_labels_in_domain_order():
    data = FineTuneDataModule("demo-mix", image_size=32)
    names = [name for _, name, _ in mix_classes()]
    assert list(data.classnames) == names and len(set(names)) == len(names)
    dataset = get_dataset_info("demo-mix").load(None, "test", False)
    offset = start = 0
    for domain in MIX_DOMAINS:
        _, labels = domain_arrays(domain, "test")
        assert dataset.sample_ids[start].startswith(f"{domain}/test/")
        assert np.array_equal(dataset.labels[start : start + len(labels)], labels + offset)
        start += len(labels)
        offset += len(get_dataset_info(domain).classnames)
    assert offset == len(names)
    assert start == len(dataset)


def test_shipped_files_match_their_checksums():
    sums = expected_checksums(FILES)
    assert set(sums) == {"digits.npz", "fashion.npz"}
    for name, digest in sums.items():
        assert sha256_of(FILES / name) == digest
        verify_shipped_file(FILES / name)
    assert (FILES / "README.md").is_file()  # provenance and licences
    total = sum((FILES / name).stat().st_size for name in sums)
    assert total < 3_000_000


def test_corrupt_or_missing_shipped_file_says_reinstall(tmp_path):
    shutil.copy(FILES / "SHA256SUMS", tmp_path / "SHA256SUMS")
    shutil.copy(FILES / "digits.npz", tmp_path / "digits.npz")
    verify_shipped_file(tmp_path / "digits.npz")
    with (tmp_path / "digits.npz").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(ShippedFileError, match=r"corrupt.*reinstall"):
        verify_shipped_file(tmp_path / "digits.npz")
    with pytest.raises(ShippedFileError, match=r"missing.*reinstall"):
        verify_shipped_file(tmp_path / "fashion-gone.npz")
