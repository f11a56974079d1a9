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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ldifs_lightning.data.errors import CorruptDataFileError, UnsafePickleError


def _rebuilder(reduced: str | tuple[Any, ...]) -> Callable[..., Any]:
    """The callable of a ``__reduce__`` result (typed ``str | tuple``; numpy gives a tuple)."""
    if isinstance(reduced, str) or not callable(reduced[0]):
        raise TypeError(f"numpy's pickling changed: __reduce__ gave {reduced!r}")
    return reduced[0]


# Taken from numpy's own pickling so that they are right for numpy 1.x (``numpy.core``) and 2.x
# (``numpy._core``) alike, without importing the deprecated module names.
_RECONSTRUCT = _rebuilder(np.empty(0).__reduce__())  # rebuilds an ndarray (protocols before 5)
_FROMBUFFER = _rebuilder(np.empty(0).__reduce_ex__(5))  # rebuilds an ndarray from its bytes (5)
_SCALAR = _rebuilder(np.int64(0).__reduce__())  # rebuilds a numpy scalar such as np.int64(3)


class _UnsafeValueError(pickle.UnpicklingError):
    """An allowed global was called with values plain data never has (refused, nothing built)."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 writes ``bytes`` into a protocol-2 pickle: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _UnsafeValueError(
            f"_codecs.encode is allowed only for latin-1 text, not {type(text).__name__} in "
            f"{encoding!r}"
        )
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """``bytes()``, as Python 3 writes an empty ``bytes`` into a protocol-2 pickle."""
    return b""


# Kinds of numpy dtype whose values are plain bytes: bool, integers, floats, complex, bytes, str.
# Object ("O") arrays hold pointers, so a file must never be able to make one.
_PLAIN_KINDS = "biufcSU"


def _plain_dtype(spec: Any) -> np.dtype:
    """The dtype a pickle names by a type string (``"u1"``, ``"<f8"``, ``"S10"``), if plain."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str):
        raise _UnsafeValueError(f"a numpy dtype given as {type(spec).__name__}, not a string")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError) as error:
        raise _UnsafeValueError(f"numpy dtype {spec!r} is not valid") from error
    if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _UnsafeValueError(
            f"numpy dtype {spec!r} is not a plain number, bytes or string type (refused: only "
            "such arrays are read)"
        )
    return dtype


class _DtypeSpec:
    """Stands in for ``numpy.dtype(spec, align, copy)`` while unpickling.

    numpy's own ``dtype.__setstate__`` lets a pickle set a dtype's internal flags (e.g. make an
    object dtype look like a plain one, so numpy later reads file bytes as pointers). This class
    never builds a dtype from the file's state: it keeps the type string's dtype and takes only
    the byte order from the state, refusing fields, sub-arrays and sizes that disagree.
    """

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        self.dtype = _plain_dtype(spec)

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, sub-array, names, fields, item size, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 6 or any(x is not None for x in state[2:5]):
            raise _UnsafeValueError("a numpy dtype state with fields or sub-arrays")
        byteorder, itemsize = state[1], state[5]
        if byteorder in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(byteorder)
        elif byteorder not in ("|", "="):
            raise _UnsafeValueError(f"a numpy dtype with byte order {byteorder!r}")
        if itemsize not in (-1, self.dtype.itemsize):
            raise _UnsafeValueError(
                f"a numpy dtype {self.dtype.str!r} claiming {itemsize} bytes per item"
            )


def _dtype_of(value: Any) -> np.dtype:
    if isinstance(value, _DtypeSpec):
        return value.dtype
    return _plain_dtype(value)


class _CheckedArray(np.ndarray):
    """What a pickle gets for ``numpy.ndarray``: its state's dtype is checked before numpy sees it.

    ``load_data_pickle`` turns every instance back into a plain ``np.ndarray``.
    """

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _UnsafeValueError("a numpy array state of an unknown form")
        state = list(state)
        dtype_at = len(state) - 3  # (version,) shape, dtype, is_fortran, raw data
        state[dtype_at] = _dtype_of(state[dtype_at])
        if not isinstance(state[-1], bytes | str):  # str: a Python 2 file read as latin-1
            raise _UnsafeValueError("a numpy array whose data are not raw bytes")
        super().__setstate__(tuple(state))


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _CheckedArray:
        raise _UnsafeValueError("numpy's _reconstruct asked for another type than ndarray")
    return _RECONSTRUCT(_CheckedArray, shape, _plain_dtype(typecode))


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _FROMBUFFER(buffer, _dtype_of(dtype), shape, order)


def _scalar(dtype: Any, *data: Any) -> Any:
    return _SCALAR(_dtype_of(dtype), *data)


#: ``(module, name)`` -> the object a pickle gets for it; every other global is refused.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "ndarray"): _CheckedArray,
    ("numpy", "dtype"): _DtypeSpec,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


def _as_plain_arrays(value: Any) -> Any:
    """``value`` with every ``_CheckedArray`` in it turned into a plain ``np.ndarray``."""
    if isinstance(value, _CheckedArray):
        return value.view(np.ndarray)
    if isinstance(value, dict):
        return {key: _as_plain_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_plain_arrays(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_as_plain_arrays(item) for item in value)
    if isinstance(value, _DtypeSpec):
        return value.dtype
    return value


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
        return _as_plain_arrays(RestrictedUnpickler(io.BytesIO(content), encoding="latin1").load())
    except (RefusedGlobalError, _UnsafeValueError) as error:
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
