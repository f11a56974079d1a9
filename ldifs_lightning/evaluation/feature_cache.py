"""Content-keyed on-disk cache for features that never change (those of pre-trained encoders).

Pre-trained features depend only on (weights, dataset, split, transform, sample subset), so they
are computed once and reused, keyed by the *content* of those parts rather than by their names:
``fingerprint_module`` hashes weights, ``cache_key`` hashes everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ldifs_lightning.atomic import atomic_write

__all__ = ["FeatureCache", "cache_key", "fingerprint_module"]

_FORMAT_VERSION = 1
_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def _tensor_bytes(tensor: Tensor) -> memoryview:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def _hash_tensor(hasher: Any, tensor: Tensor) -> None:
    hasher.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    hasher.update(_tensor_bytes(tensor))


def fingerprint_module(module: nn.Module) -> str:
    """SHA-256 over a module's state_dict: every entry's name, dtype, shape and raw bytes.

    Two modules get the same fingerprint exactly when their state_dicts hold the same names
    with bit-identical tensors (parameters and persistent buffers), wherever they live.

    Args:
        module: Any module, on any device.

    Returns:
        A 64-character hex digest.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> b.load_state_dict(a.state_dict())
        <All keys matched successfully>
        >>> fingerprint_module(a) == fingerprint_module(b)
        True
    """
    hasher = hashlib.sha256()
    for name, value in module.state_dict().items():
        hasher.update(f"{len(name)}:{name}|".encode())
        if isinstance(value, Tensor):
            _hash_tensor(hasher, value)
        else:  # extra state: hash a canonical form when it has one
            hasher.update(json.dumps(_canonical(value, name), sort_keys=True).encode())
    return hasher.hexdigest()


def _canonical(value: Any, where: str) -> Any:
    """JSON-ready form of a key part; tensors and arrays become digests of their content."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}  # repr round-trips exactly and handles nan/inf
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, Tensor):
        hasher = hashlib.sha256()
        _hash_tensor(hasher, value)
        return {"tensor": hasher.hexdigest()}
    if isinstance(value, np.ndarray):
        return _canonical(torch.from_numpy(np.ascontiguousarray(value)), where)
    if isinstance(value, np.generic):
        return _canonical(value.item(), where)
    if isinstance(value, (list, tuple, range)):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        items = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"cache key part {where!r} has a non-string dict key {key!r}")
            items[key] = _canonical(item, f"{where}.{key}")
        return {"dict": items}
    raise ValueError(
        f"cache key part {where!r} has unsupported type {type(value).__name__}; allowed: str, "
        "int, float, bool, None, Path, list, tuple, range, dict, Tensor, numpy array"
    )


def cache_key(**parts: Any) -> str:
    """SHA-256 of a canonical JSON of ``parts``, with tensors and arrays hashed by content.

    Lists, tuples and ranges of the same items give the same key; dict order does not matter;
    a tensor and a list with the same numbers do not collide.

    Args:
        **parts: Everything the cached value depends on, e.g. ``weights=fingerprint_module(m)``,
            ``dataset="cifar10"``, ``split="test"``, ``transform=repr(transform)``,
            ``indices=[...]``.

    Returns:
        A 64-character hex digest, usable as a :class:`FeatureCache` key.

    Example:
        >>> cache_key(dataset="dtd", split="test") == cache_key(split="test", dataset="dtd")
        True
        >>> cache_key(indices=[1, 2]) == cache_key(indices=[2, 1])
        False
    """
    if not parts:
        raise ValueError("cache_key needs at least one part, e.g. cache_key(dataset='dtd')")
    canonical = {name: _canonical(value, name) for name, value in parts.items()}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"cache key {key!r} is not allowed; use letters, digits, '_', '-', '.' "
            "(at most 200, not starting with '.'), e.g. the output of cache_key()"
        )


def _payload_checksum(tensors: Mapping[str, Tensor]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        hasher.update(f"{len(name)}:{name}|".encode())
        _hash_tensor(hasher, tensors[name])
    return hasher.hexdigest()


class FeatureCache:
    """One file per key under ``directory``, each holding CPU tensors and their checksum.

    Entries are written atomically (temporary file in the same directory, fsync, ``os.replace``)
    and verified on every read (loadable with ``weights_only=True``, stored key equals the
    requested key, SHA-256 of the tensors matches): a bad entry is reported with one warning,
    deleted and treated as a miss, never returned. The cache is an optimisation, so I/O trouble
    never raises: an uncreatable or unwritable directory disables the cache with one warning,
    and a failed write warns and leaves any previous entry intact. ``directory=None`` disables
    it silently. Under DDP, let one rank write.

    Attributes:
        directory: Where entries live, or None when the cache is disabled.
        hits: Number of ``get`` calls that returned an entry.
        misses: Number of ``get`` calls that did not (including bad entries and a disabled cache).

    Example:
        >>> import tempfile
        >>> cache = FeatureCache(tempfile.mkdtemp())
        >>> key = cache_key(dataset="toy", split="test")
        >>> cache.get(key) is None
        True
        >>> cache.put(key, {"features": torch.ones(2, 3)})
        >>> cache.get(key)["features"].shape, cache.hits, cache.misses
        (torch.Size([2, 3]), 1, 1)
    """

    def __init__(self, directory: str | Path | None) -> None:
        self.hits = 0
        self.misses = 0
        self.directory: Path | None = None
        if directory is None:
            return
        path = Path(directory).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe_fd, probe_name = tempfile.mkstemp(dir=path, prefix=".write-test-")
            os.close(probe_fd)
            os.unlink(probe_name)
        except OSError as exc:
            warnings.warn(
                f"feature cache disabled: cannot write to {str(path)!r} ({exc})",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        self.directory = path

    @property
    def enabled(self) -> bool:
        """Whether entries are read and written."""
        return self.directory is not None

    def path(self, key: str) -> Path:
        """File an entry for ``key`` is stored in."""
        _check_key(key)
        if self.directory is None:
            raise ValueError("the feature cache is disabled; it has no paths")
        return self.directory / f"{key}.pt"

    def get(self, key: str) -> dict[str, Tensor] | None:
        """The tensors stored under ``key`` (on CPU), or None on a miss.

        Example:
            >>> FeatureCache(None).get(cache_key(dataset="toy")) is None
            True
        """
        _check_key(key)
        if self.directory is None:
            self.misses += 1
            return None
        path = self.path(key)
        if not path.exists():
            self.misses += 1
            return None
        problem: str | None = None
        tensors: dict[str, Tensor] | None = None
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or garbled files raise many different types
            problem = f"unreadable ({type(exc).__name__})"
        else:
            if (
                not isinstance(record, dict)
                or record.get("format") != _FORMAT_VERSION
                or not isinstance(record.get("tensors"), dict)
                or not all(isinstance(t, Tensor) for t in record["tensors"].values())
            ):
                problem = "unexpected contents"
            elif record.get("key") != key:
                problem = "stored under a different key"
            elif record.get("checksum") != _payload_checksum(record["tensors"]):
                problem = "checksum mismatch"
            else:
                tensors = record["tensors"]
        if tensors is None:
            warnings.warn(
                f"feature cache entry {str(path)!r} is corrupt ({problem}); deleted, recomputing",
                RuntimeWarning,
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    def put(self, key: str, tensors: Mapping[str, Tensor]) -> None:
        """Store ``tensors`` (copied to CPU) under ``key``, atomically replacing any old entry.

        Example:
            >>> FeatureCache(None).put(cache_key(dataset="toy"), {"x": torch.zeros(1)})
        """
        if not isinstance(tensors, Mapping) or not all(
            isinstance(name, str) and isinstance(value, Tensor) for name, value in tensors.items()
        ):
            raise ValueError("tensors must be a dict mapping str names to Tensors")
        _check_key(key)
        if self.directory is None:
            return
        path = self.path(key)
        # A copy: a view would otherwise drag its whole storage into the file.
        payload = {name: value.detach().to("cpu", copy=True) for name, value in tensors.items()}
        record = {
            "format": _FORMAT_VERSION,
            "key": key,
            "checksum": _payload_checksum(payload),
            "tensors": payload,
        }
        try:
            atomic_write(path, lambda handle: torch.save(record, handle))
        except OSError as exc:
            warnings.warn(
                f"feature cache could not write {str(path)!r} ({exc}); continuing without it",
                RuntimeWarning,
                stacklevel=2,
            )
