"""Files shipped inside the package: the demo CLIP's weights, and sha256 checks for shipped files.

``pretrained: demo`` (with ``model_name: ldifs-tiny-vit``) loads ``demo-clip.pt``, the tiny CLIP
pre-trained by ``configs/demo/pretrain.yaml`` (see ``MODEL_CARD.md`` next to it). Every shipped
file is checked against ``SHA256SUMS`` in its folder before use; a missing or altered file fails
with one line saying to reinstall. This module imports nothing from the rest of the package.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

HERE = Path(__file__).parent
#: The architecture the shipped weights belong to, and the ``pretrained`` tag that loads them.
DEMO_MODEL_NAME = "ldifs-tiny-vit"
DEMO_TAG = "demo"
DEMO_WEIGHTS = HERE / "demo-clip.pt"

_REINSTALL = (
    "reinstall ldifs-lightning (pip install --force-reinstall ldifs-lightning, or "
    "pip install -e . in a checkout)"
)


class ShippedFileError(RuntimeError):
    """A shipped data or weight file is missing or does not match its sha256 checksum."""


def expected_checksums(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` from ``folder/SHA256SUMS`` (``sha256sum`` format)."""
    listing = folder / "SHA256SUMS"
    if not listing.is_file():
        raise ShippedFileError(f"checksum list {listing} is missing; {_REINSTALL}")
    lines = listing.read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.cache
def _verified(path: Path, size: int, mtime: float) -> Path:
    expected = expected_checksums(path.parent).get(path.name)
    if expected is None:
        listing = path.parent / "SHA256SUMS"
        raise ShippedFileError(f"{path.name} is not listed in {listing}; {_REINSTALL}")
    digest = sha256_of(path)
    if digest != expected:
        raise ShippedFileError(
            f"shipped file {path} is corrupt (sha256 {digest[:12]}... does not match "
            f"{expected[:12]}... in SHA256SUMS); {_REINSTALL}"
        )
    return path


def verify_shipped_file(path: str | Path) -> Path:
    """Return ``path`` if it matches its folder's ``SHA256SUMS``, else raise ShippedFileError.

    The check is done once per process for an unchanged file (same size and mtime).

    Example:
        >>> verify_shipped_file(DEMO_WEIGHTS).name
        'demo-clip.pt'
    """
    path = Path(path)
    if not path.is_file():
        raise ShippedFileError(f"shipped file {path} is missing; {_REINSTALL}")
    stat = path.stat()
    return _verified(path, stat.st_size, stat.st_mtime)


def demo_weights(model_name: str) -> Path:
    """The verified path of the shipped demo weights, for ``model_name`` ``ldifs-tiny-vit`` only."""
    if model_name != DEMO_MODEL_NAME:
        raise ValueError(
            f"pretrained={DEMO_TAG!r} is the shipped demo CLIP, built for "
            f"model_name={DEMO_MODEL_NAME!r}, not {model_name!r}: set model_name: {DEMO_MODEL_NAME}"
        )
    return verify_shipped_file(DEMO_WEIGHTS)


__all__ = [
    "DEMO_MODEL_NAME",
    "DEMO_TAG",
    "DEMO_WEIGHTS",
    "ShippedFileError",
    "demo_weights",
    "expected_checksums",
    "sha256_of",
    "verify_shipped_file",
]
