"""Bad array-format files (CIFAR pickles, MNIST idx, SVHN ``.mat``, STL-10 ``.bin``).

Used by ``test_array_formats.py`` on copies written by ``fake_datasets``: a file cut short, a file
of bytes in no format, a Python-2-style CIFAR pickle (how the official files were written), and
pickles that run a command when Python's full ``pickle`` loads them.
"""

from __future__ import annotations

import builtins
import os
import pickle
import struct
from pathlib import Path
from typing import Any

#: Bytes in no dataset format: not a pickle opcode, not an idx or MATLAB header, and an odd length.
GARBAGE = b"\xa7 this file holds no images, only text \xa7\n" * 9


def truncate(path: Path) -> int:
    """Cut ``path`` after two thirds of its bytes and one more, so that the cut falls inside a
    fixed-size record (an image) rather than between two; returns the new size."""
    content = path.read_bytes()
    size = 2 * len(content) // 3 + 1
    path.write_bytes(content[:size])
    return size


class _Python2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2's ``str`` (``BINSTRING``), as cPickle wrote the
    official CIFAR files; Python 3's pickler has no such opcode output."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_python2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_python2_str
    dispatch[str] = _save_python2_str


def python2_pickle(content: Any) -> bytes:
    """``content`` pickled as Python 2 with numpy 1.x wrote it: protocol 2, ``BINSTRING`` for
    strings and array bytes, ``numpy.core.multiarray`` as the module of ``_reconstruct``."""
    import io

    stream = io.BytesIO()
    _Python2Pickler(stream, protocol=2).dump(content)
    return stream.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


class RunsShellCommand:
    """Pickles as ``os.system(command)``: Python's ``pickle`` runs the command when loading it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (self.command,)


class RunsEval:
    """Pickles as ``builtins.eval(source)``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[Any, ...]:
        return builtins.eval, (self.source,)


def touch_command(marker: Path) -> str:
    """A shell command that creates ``marker``: if it exists afterwards, the pickle's code ran."""
    return f"touch '{marker}'"


def write_eval_source(marker: Path) -> str:
    """Python source that creates ``marker`` when evaluated."""
    return f"open({str(marker)!r}, 'w').write('ran')"


# Pickles that use only the restricted unpickler's allowed globals (numpy.dtype, scalar,
# _reconstruct, ndarray) but give numpy's dtype a state whose flags are cleared: numpy then treats
# an object dtype as plain bytes, so the file's bytes would be read as object pointers (a crash
# at a memory address the file chooses). Written opcode by opcode: pickle.dumps cannot make them.
def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _forged_object_dtype() -> bytes:
    """``numpy.dtype("O8", False, True)`` then BUILD with state ``(3, "|", ..., flags=0)``."""
    build = _global("numpy", "dtype") + _text("O8") + pickle.NEWFALSE + pickle.NEWTRUE
    build += pickle.TUPLE3 + pickle.REDUCE
    state = pickle.MARK + b"K\x03" + _text("|") + pickle.NONE + pickle.NONE + pickle.NONE
    state += b"J" + struct.pack("<i", -1) + b"J" + struct.pack("<i", -1) + b"K\x00" + pickle.TUPLE
    return build + state + pickle.BUILD


def forged_dtype_pickle(form: str) -> bytes:
    """A CIFAR-like dict whose ``data`` is a numpy ``scalar`` or array of a forged object dtype."""
    pointer = b"C\x08" + b"AAAAAAAA"  # SHORT_BINBYTES: eight bytes numpy would read as a pointer
    if form == "scalar":
        data = _global("numpy._core.multiarray", "scalar") + _forged_object_dtype() + pointer
        data += pickle.TUPLE2 + pickle.REDUCE
    else:
        data = _global("numpy._core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
        data += b"K\x00" + pickle.TUPLE1 + b"C\x01b" + pickle.TUPLE3 + pickle.REDUCE
        data += pickle.MARK + b"K\x01" + b"K\x01" + pickle.TUPLE1 + _forged_object_dtype()
        data += pickle.NEWFALSE + pointer + pickle.TUPLE + pickle.BUILD
    items = _text("data") + data + _text("labels") + pickle.EMPTY_LIST
    return b"\x80\x02" + pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + pickle.STOP
