import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ldifs_lightning.evaluation import FeatureCache, cache_key, fingerprint_module
from ldifs_lightning.evaluation import feature_cache as feature_cache_module


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model[1].running_mean.add_(0.5)
    return model


def _parts(model: nn.Module, **overrides: object) -> dict[str, object]:
    parts: dict[str, object] = {
        "weights": fingerprint_module(model),
        "dataset": "dtd",
        "split": "test",
        "transform": "Compose(Resize(224), ToTensor())",
        "indices": list(range(0, 100, 3)),
    }
    parts.update(overrides)
    return parts


def _entry(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"features": torch.randn(6, 4, generator=generator), "labels": torch.arange(6)}


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# --- fingerprints and keys ---------------------------------------------------------------------


def test_fingerprint_is_sha256_of_names_dtypes_shapes_bytes() -> None:
    model = _model()
    hasher = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        hasher.update(f"{len(name)}:{name}|".encode())
        hasher.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.numpy().tobytes())
    assert fingerprint_module(model) == hasher.hexdigest()


def test_fingerprint_follows_content_not_identity() -> None:
    model, twin = _model(), _model(seed=5)
    twin.load_state_dict(model.state_dict())
    assert fingerprint_module(model) == fingerprint_module(twin)
    with torch.no_grad():
        twin[0].weight[1, 2] += 1e-6  # one element of one tensor
    assert fingerprint_module(model) != fingerprint_module(twin)
    twin.load_state_dict(model.state_dict())
    twin[1].running_mean[0] += 1.0  # buffers count too
    assert fingerprint_module(model) != fingerprint_module(twin)
    assert fingerprint_module(model) != fingerprint_module(_model().double())  # dtype counts


def test_fingerprint_handles_bfloat16() -> None:
    model = _model().to(torch.bfloat16)
    assert fingerprint_module(model) == fingerprint_module(model)
    assert fingerprint_module(model) != fingerprint_module(_model())


def test_cache_key_changes_with_every_part() -> None:
    model = _model()
    base = cache_key(**_parts(model))
    assert base == cache_key(**dict(reversed(list(_parts(model).items()))))  # order-free
    tweaked = _model()
    with torch.no_grad():
        tweaked[0].bias[0] += 1e-3
    variants = [
        _parts(tweaked),
        _parts(model, split="train"),
        _parts(model, dataset="dtd2"),
        _parts(model, transform="Compose(Resize(256), ToTensor())"),
        _parts(model, indices=list(range(1, 100, 3))),
        _parts(model, indices=list(range(0, 99, 3))),
        _parts(model, seed=0),
    ]
    keys = {cache_key(**parts) for parts in variants}
    assert base not in keys and len(keys) == len(variants)


def test_cache_key_hashes_tensors_by_content() -> None:
    indices = torch.arange(10)
    assert cache_key(indices=indices) == cache_key(indices=torch.arange(10))
    assert cache_key(indices=indices) == cache_key(indices=np.arange(10))
    assert cache_key(indices=indices) != cache_key(indices=torch.arange(10).flip(0))
    assert cache_key(indices=indices) != cache_key(indices=list(range(10)))  # typed differently
    assert cache_key(n=1) != cache_key(n=1.0) != cache_key(n="1")
    assert cache_key(x=[1, 2]) == cache_key(x=(1, 2))


def test_cache_key_rejects_unsupported_parts() -> None:
    with pytest.raises(ValueError, match="'model' has unsupported type Linear; allowed"):
        cache_key(model=nn.Linear(1, 1))
    with pytest.raises(ValueError, match="at least one part"):
        cache_key()


# --- FeatureCache ------------------------------------------------------------------------------


def test_hit_after_put_and_miss_for_other_keys(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    model = _model()
    key = cache_key(**_parts(model))
    assert cache.get(key) is None
    cache.put(key, _entry())
    got = cache.get(key)
    assert got is not None and set(got) == {"features", "labels"}
    assert torch.equal(got["features"], _entry()["features"])
    assert torch.equal(got["labels"], torch.arange(6))
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.get(cache_key(**_parts(model, split="train"))) is None
    assert (cache.hits, cache.misses) == (1, 2)
    assert _files(tmp_path) == [f"{key}.pt"]


def test_views_store_only_their_elements(tmp_path: Path) -> None:
    big = torch.randn(10_000, 64)
    cache = FeatureCache(tmp_path)
    key = cache_key(dataset="toy")
    cache.put(key, {"features": big[:2]})
    assert (tmp_path / f"{key}.pt").stat().st_size < 20_000
    assert torch.equal(cache.get(key)["features"], big[:2])


def test_truncated_entry_warns_once_and_recomputes(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(dataset="toy")
    cache.put(key, _entry())
    path = tmp_path / f"{key}.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match="corrupt") as caught:
        assert cache.get(key) is None
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    cache.put(key, _entry(seed=9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten entry is good: no second warning
        assert torch.equal(cache.get(key)["features"], _entry(seed=9)["features"])


def test_flipped_data_byte_is_detected(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(dataset="toy")
    marker = torch.full((64,), 1234.5678)  # a byte pattern easy to find in the file
    cache.put(key, {"features": marker})
    path = tmp_path / f"{key}.pt"
    raw = bytearray(path.read_bytes())
    offset = raw.find(marker.numpy().tobytes())
    assert offset >= 0
    raw[offset + 100] ^= 0x01  # one bit of one float: still a loadable file
    path.write_bytes(bytes(raw))
    loaded = torch.load(path, weights_only=True)["tensors"]["features"]
    assert not torch.equal(loaded, marker)  # torch itself does not notice
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        assert cache.get(key) is None
    assert not path.exists()
    assert cache.misses == 1 and cache.hits == 0


def test_entry_under_the_wrong_key_is_rejected(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    key, other = cache_key(split="train"), cache_key(split="test")
    cache.put(key, _entry())
    os.replace(tmp_path / f"{key}.pt", tmp_path / f"{other}.pt")
    with pytest.warns(RuntimeWarning, match="different key"):
        assert cache.get(other) is None
    assert _files(tmp_path) == []


def test_garbage_file_is_rejected(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(split="train")
    (tmp_path / f"{key}.pt").write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert cache.get(key) is None


def test_failed_write_keeps_old_entry_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(dataset="toy")
    cache.put(key, _entry(seed=1))
    real_save = torch.save

    def save_half_then_fail(obj: object, handle, *args, **kwargs) -> None:
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)
        raise OSError("disk full")

    monkeypatch.setattr(feature_cache_module.torch, "save", save_half_then_fail)
    with pytest.warns(RuntimeWarning, match="could not write.*disk full"):
        cache.put(key, _entry(seed=2))
    monkeypatch.undo()
    assert _files(tmp_path) == [f"{key}.pt"]
    assert torch.equal(cache.get(key)["features"], _entry(seed=1)["features"])


def test_failed_replace_keeps_old_entry_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(dataset="toy")
    cache.put(key, _entry(seed=1))

    def failing_replace(source: str, target: object) -> None:
        assert Path(source).exists()  # the complete temp file was there to be renamed
        raise OSError("rename refused")

    monkeypatch.setattr(feature_cache_module.os, "replace", failing_replace)
    with pytest.warns(RuntimeWarning, match="rename refused"):
        cache.put(key, _entry(seed=2))
    monkeypatch.undo()
    assert _files(tmp_path) == [f"{key}.pt"]
    assert torch.equal(cache.get(key)["features"], _entry(seed=1)["features"])


def test_interrupted_write_cleans_up_and_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(dataset="toy")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(feature_cache_module.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put(key, _entry())
    assert _files(tmp_path) == []


def test_unwritable_directory_disables_with_one_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file")
    with pytest.warns(RuntimeWarning, match="feature cache disabled") as caught:
        cache = FeatureCache(blocker / "sub")
    assert len(caught) == 1
    assert not cache.enabled
    key = cache_key(dataset="toy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.put(key, _entry())
        assert cache.get(key) is None
        assert cache.get(key) is None
    assert cache.misses == 2


def test_none_directory_is_silently_disabled() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = FeatureCache(None)
        key = cache_key(dataset="toy")
        cache.put(key, _entry())
        assert cache.get(key) is None
    assert not cache.enabled


def test_bad_keys_and_payloads(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=re.escape("cache key '../escape' is not allowed")):
        cache.get("../escape")
    with pytest.raises(ValueError, match="not allowed"):
        cache.put(".hidden", _entry())
    with pytest.raises(ValueError, match="dict mapping str names to Tensors"):
        cache.put(cache_key(a=1), {"features": [1, 2]})  # type: ignore[dict-item]
