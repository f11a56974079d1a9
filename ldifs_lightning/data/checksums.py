"""MD5 checks of official files, and the switch that skips them for user-provided copies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from ldifs_lightning.data.errors import ChecksumMismatchError

SKIP_HINT = "set verify_checksums: false to use a copy you made or modified"


def md5sum(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def require_checksums(dataset: str, files: Iterable[tuple[Path, str]]) -> None:
    """Raise ``ChecksumMismatchError`` for the first file whose MD5 is not the official one."""
    for path, expected in files:
        actual = md5sum(path)
        if actual != expected:
            raise ChecksumMismatchError(
                f"{dataset}: {path} has md5 {actual}, the official file has {expected}; "
                f"re-download it, or {SKIP_HINT}"
            )
