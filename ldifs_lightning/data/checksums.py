"""MD5 checks of official files, and the switch that skips them for user-provided copies."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torchvision.datasets.utils import calculate_md5

from ldifs_lightning.data.errors import ChecksumMismatchError

SKIP_HINT = "set verify_checksums: false to use a copy you made or modified"


def require_checksums(dataset: str, files: Iterable[tuple[Path, str]]) -> None:
    """Raise ``ChecksumMismatchError`` for the first file whose MD5 is not the official one.

    Unlike torchvision's ``check_integrity``, which only answers yes or no, the error names the
    MD5 found, so a user can tell a truncated download from a different release.

    Example:
        >>> files = [(Path("data/svhn/test_32x32.mat"), "eb5a983be6a315427106f1b164d9cef3")]
        >>> require_checksums("svhn", files)  # doctest: +SKIP
    """
    for path, expected in files:
        actual = calculate_md5(path)
        if actual != expected:
            raise ChecksumMismatchError(
                f"{dataset}: {path} has md5 {actual}, the official file has {expected}; "
                f"re-download it, or {SKIP_HINT}"
            )
