"""Read pickles as data, never as code: dicts, lists, strings, bytes, numbers and numpy arrays.

Python's ``pickle`` imports and calls whatever callable a file names (``os.system``,
``builtins.eval``, ...), so loading a crafted file runs its code. ``RestrictedUnpickler`` resolves
only the globals that rebuild numpy arrays and bytes (``ALLOWED_GLOBALS``) and refuses every other
one before it is imported, let alone called. Containers, strings and numbers need no global at all.

This is what the CIFAR python pickles hold: a dict of a ``uint8`` array, a list of int labels and a
few strings (the official files were written by Python 2 with protocol 2).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ldifs_lightning.data.errors import CorruptDataFileError, UnsafePickleError

# Taken from numpy's own pickling so that they are right for numpy 1.x (``numpy.core``) and 2.x
# (``numpy._core``) alike, without importing the deprecated module names.
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # rebuilds an ndarray (every protocol before 5)
_FROMBUFFER = np.empty(0).__reduce_ex__(5)[0]  # rebuilds an ndarray from its bytes (protocol 5)
_SCALAR = np.int64(0).__reduce__()[0]  # rebuilds a numpy scalar such as np.int64(3)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 writes ``bytes`` into a protocol-2 pickle: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"_codecs.encode is allowed only for latin-1 text, not {type(text).__name__} in "
            f"{encoding!r}"
        )
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """``bytes()``, as Python 3 writes an empty ``bytes`` into a protocol-2 pickle."""
    return b""


#: ``(module, name)`` -> the object a pickle gets for it; every other global is refused.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle named a global outside ``ALLOWED_GLOBALS``; nothing was imported or called."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(
            f"the pickle asks for {module}.{name}, which plain data never needs and which could "
            "run code (refused; only dicts, lists, strings, bytes, numbers and numpy arrays are "
            "read)"
        )
        self.module, self.name = module, name


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``ALLOWED_GLOBALS`` and refuses every other global.

    Example:
        >>> stream = io.BytesIO(pickle.dumps({"labels": [3, 1]}, protocol=2))
        >>> RestrictedUnpickler(stream, encoding="latin1").load()
        {'labels': [3, 1]}
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise RefusedGlobalError(module, name)
        return allowed


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_data_pickle(path: Path, *, dataset: str, kind: str, fix: str) -> Any:
    """Unpickle ``path`` with ``RestrictedUnpickler`` (``encoding="latin1"``, for Python 2 files).

    Args:
        path: The file.
        dataset: Registry name, the prefix of error messages.
        kind: What the file should be, e.g. ``"a CIFAR batch"``, for error messages.
        fix: What to do about a bad file; ends every error message.

    Raises:
        UnsafePickleError: The pickle asks for a global outside ``ALLOWED_GLOBALS``.
        CorruptDataFileError: The file is truncated or not a pickle at all.
    """
    content = Path(path).read_bytes()
    prefix = f"{dataset}: {path} is not {kind}"
    try:
        return RestrictedUnpickler(io.BytesIO(content), encoding="latin1").load()
    except RefusedGlobalError as error:
        raise UnsafePickleError(f"{prefix}: {error}; {fix}") from error
    # Bytes that are not a pickle make the unpickler raise almost anything (UnpicklingError,
    # ValueError, KeyError, TypeError, IndexError, MemoryError, ...); all of them mean "bad file".
    except Exception as error:
        if not content:
            reason = "the file is empty"
        elif isinstance(error, EOFError) or "truncated" in str(error):
            reason = f"truncated pickle (its {len(content):,} bytes end before the pickle does)"
        else:
            reason = f"not a valid pickle ({_one_line(error)})"
        raise CorruptDataFileError(f"{prefix}: {reason}; {fix}") from error
