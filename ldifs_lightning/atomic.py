"""The package's one way to write a results file: all of it or nothing, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` so that readers see the old or the new file only.

    ``write`` fills a temporary file in the same folder; it is flushed, fsynced and renamed over
    ``path`` with ``os.replace`` (atomic on POSIX and Windows), then the folder is fsynced so the
    rename itself survives a crash. The file gets the mode any new file gets under the user's
    umask (0644 under 022; the temporary file starts at 0600). Missing parent folders are
    created. On any error the temporary file is removed, ``path`` is left as it was and the
    error propagates.

    Args:
        path: File to create or replace.
        write: Called once with the open binary file.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out" / "a.bin"
        >>> atomic_write(target, lambda file: file.write(b"abc"))
        >>> target.read_bytes()
        b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            os.fchmod(file.fileno(), _new_file_mode())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of ``text`` encoded as UTF-8.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.csv"
        >>> atomic_write_text(target, "x,y\\n")
        >>> target.read_text()
        'x,y\\n'
    """
    data = text.encode("utf-8")
    atomic_write(path, lambda file: file.write(data))


def _new_file_mode() -> int:
    """``0o666 & ~umask``: what ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable; best effort (not every platform can open folders)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
