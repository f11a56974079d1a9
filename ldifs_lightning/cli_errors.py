"""How the ``ldifs`` command reports a user's mistake: one line on stderr, no traceback.

A bad value in a config or on the command line surfaces in three places: jsonargparse's parser
(unknown keys, values of the wrong type or outside a ``Literal``), the classes it instantiates
(the module's and DataModule's own checks, which raise ``ValueError``), and the run itself (a
dataset whose files are missing or corrupt fails at ``setup``). All of them end as::

    error: <what was wrong and what is allowed>

with exit status 2. Setting ``LDIFS_TRACEBACK=1`` in the environment re-raises instead, for the
full traceback. Anything else (a bug) keeps its traceback, and so does any error raised once
the run itself has started (``cli.py`` marks those with ``mark_as_run_error``), except bad
dataset files, which a run may only meet when it reads them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator, Sequence

from lightning.fabric.utilities.exceptions import MisconfigurationException

from ldifs_lightning.data.errors import DatasetError
from ldifs_lightning.pretrained import ShippedFileError

#: Environment variable that turns one-line errors back into full tracebacks.
TRACEBACK_ENV = "LDIFS_TRACEBACK"
#: Exit status of a run refused because of bad input (argparse's convention).
USER_ERROR_EXIT = 2

# What a user can cause with a bad value or a bad file. ValueError is what every check in the
# package raises; the rest come from argument parsing, Lightning's own checks and the file system.
USER_ERRORS: tuple[type[BaseException], ...] = (
    argparse.ArgumentError,
    ValueError,
    DatasetError,
    ShippedFileError,
    MisconfigurationException,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)

# jsonargparse reports a value that fits none of a Union's types (an optional class whose
# __init__ refused its arguments, a Trainer option of several types) as a multi-line message
# listing each type's error under "Errors:"; those errors, minus "it is not None", are the news.
_UNION_WRAPPER = "Does not validate against any of the Union subtypes"
_GIVEN_VALUE = re.compile(r"^\s*Given value: (.*)$", re.MULTILINE)
_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*')
# After a subclass's own error (e.g. a callback's init argument) jsonargparse appends the generic
# forms a subclass value may take; that list does not help with the error before it.
_SUBCLASS_FORMS = re.compile(
    r";?\s*Not a valid subclass of [\w.]+\s*Subclass types expect one of:.*$"
)
_CLASS_PATH_KEY = re.compile(
    r"^Problem with given class_path '[^']+':\s*Parser key \"([^\"]+)\":\s*"
)
# A Union nested in another (a class's list-valued argument) repeats the wrapper sentence.
_NESTED_UNION_WRAPPER = re.compile(_UNION_WRAPPER + r";?\s*")
# A class_path that names no importable class of the expected kind, in jsonargparse's words.
_BAD_CLASS_PATH = re.compile(
    r"Problem with given class_path '(?P<path>[^']+)':\s*(?:module '(?P<module>[\w.]+)' has no "
    r"attribute '(?P<name>\w+)'|(?P<why>No module named '(?P<missing>[\w.]+)'))"
    r"|Expected a dot import path string: (?P<bare>[^\s;]+)"
    r"|Import path (?P<other>\S+) does not correspond to a subclass of \w+"
)
_SUBTYPE_CLASS = re.compile(r"\b((?:[A-Za-z_]\w*\.)+[A-Z]\w*)\b")


def _errors_listed_in_union_message(message: str) -> list[str]:
    """The ``- ...`` lines under ``Errors:`` of a jsonargparse Union message, minus NoneType."""
    listed, inside = [], False
    for line in message.splitlines():
        stripped = line.strip()
        if stripped == "Errors:":
            inside = True
        elif stripped.startswith(("Given value", "Subtypes:")):
            inside = False
        elif inside and stripped.startswith("- "):
            if "NoneType" not in stripped:
                listed.append(stripped[2:])
        elif inside and listed and stripped:
            listed[-1] += " " + stripped
    return listed


def _exported(cls: type) -> bool:
    """Whether ``cls`` is exported by the package its module is in (not an internal base)."""
    package = sys.modules.get(cls.__module__.rpartition(".")[0])
    return cls.__name__ in getattr(package, "__all__", ()) and not cls.__name__.startswith("_")


def _allowed_classes(message: str) -> tuple[str, str]:
    """The base class a Union's ``Subtypes:`` line names, and the classes to suggest for it.

    The innermost ``Subtypes:`` line is the one whose class the bad value was meant to be. The
    suggestions are this package's exported subclasses and, when there are few enough to read,
    those exported by the base's own library (Lightning's ~25 callbacks are named by package).
    Returns ``("", "")`` when there is no base class to name.
    """
    subtypes = re.findall(r"Subtypes: \[(.*)\]", message)
    for path in _SUBTYPE_CLASS.findall(subtypes[-1] if subtypes else ""):
        module_name, _, class_name = path.rpartition(".")
        try:
            base = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        ours: set[str] = set()
        theirs: set[str] = set()
        pending = list(base.__subclasses__())
        while pending:
            subclass = pending.pop()
            pending.extend(subclass.__subclasses__())
            if _exported(subclass):
                mine = subclass.__module__.startswith("ldifs_lightning.")
                (ours if mine else theirs).add(subclass.__name__)
        named = sorted(ours) + (sorted(theirs) if len(theirs) <= 8 else [])
        if len(theirs) > 8:
            named.append(f"a class of {base.__module__.rpartition('.')[0]}")
        return class_name, ", ".join(named)
    return "", ""


def _bad_class_path_message(message: str, raw: str) -> str:
    """jsonargparse's words for a class_path that names no usable class, made actionable.

    ``raw`` is the whole multi-line message, whose ``Subtypes:`` line says what kind of class
    was expected; the message then lists the package's classes of that kind.
    """
    match = _BAD_CLASS_PATH.search(message)
    missing = match.group("missing") if match else None
    if not match or (missing and not match.group("path").startswith(missing)):
        return message  # a module the class itself imports is missing: not the class path's fault
    if match.group("module"):
        module, name = match.group("module"), match.group("name")
        why = f"class_path '{match.group('path')}': {module} has no {name!r}"
    elif match.group("why"):
        why = f"class_path '{match.group('path')}': {match.group('why')}"
    elif match.group("bare"):
        why = f"class_path '{match.group('bare')}' is neither a known class name nor an import path"
    else:
        why = match.group(0)
    base, allowed = _allowed_classes(raw)
    if allowed:
        article = "an" if base[:1] in "AEIOU" else "a"
        why += f"; allowed: {allowed} or the import path of {article} {base} subclass"
    return why


def one_line_message(error: BaseException) -> str:
    """The message of ``error`` as one line: jsonargparse's wrappers removed, lines joined.

    Example:
        >>> one_line_message(ValueError("ldifs_weight=-1.0 must be >= 0"))
        'ldifs_weight=-1.0 must be >= 0'
    """
    message = raw = str(error).strip() or type(error).__name__
    key = ""
    match = _PARSER_KEY.match(message)
    if match:  # 'Parser key "model":\n  <why>': keep the key, explain the why
        key, message = match.group(1), message[match.end() :]
    if _UNION_WRAPPER in message:
        listed = _errors_listed_in_union_message(message)
        given = _GIVEN_VALUE.search(message)
        # A plain value is worth repeating; a class's whole Namespace of arguments is not.
        got = given.group(1).strip() if given else ""
        plain = got and not got.startswith(("Namespace(", "{", "[Namespace(", "[{"))
        shown = f" (got {got})" if plain else ""
        if listed:
            message = "; ".join(listed) + shown
    message = " ".join(part.strip() for part in message.splitlines() if part.strip())
    message = _SUBCLASS_FORMS.sub("", message) or message
    match = _CLASS_PATH_KEY.match(message)
    if match:  # an init argument of a class_path: name it as the user writes it
        key = f"{key}.init_args.{match.group(1)}" if key else match.group(1)
        message = message[match.end() :]
    message = _NESTED_UNION_WRAPPER.sub("", message) or message
    message = _bad_class_path_message(message, raw)
    return f"{key}: {message}" if key else message


_RUN_ERROR = "_ldifs_raised_during_run"


def mark_as_run_error(error: BaseException) -> None:
    """Keep ``error``'s traceback: it was raised while training/evaluating, after input checks."""
    setattr(error, _RUN_ERROR, True)


@contextlib.contextmanager
def running() -> Iterator[None]:
    """Mark what fails inside the block as a run error (traceback kept): the input was checked
    before it, and a failure while training or evaluating is not a bad option. Bad dataset or
    shipped files, which a run may only meet when it reads them, stay one-line user errors.

    Example:
        >>> with running():  # doctest: +SKIP
        ...     trainer.fit(model, datamodule=data)
    """
    try:
        yield
    except Exception as error:
        if not isinstance(error, DatasetError | ShippedFileError):
            mark_as_run_error(error)
        raise


def list_value_hint(message: str, argv: Sequence[str]) -> str:
    """A hint for ``--option a b``: an option takes one value, so ``b`` is "unrecognized".

    Returns the text to append to ``message`` (empty when it does not apply). The list is shown
    quoted, as shells such as zsh would otherwise expand the brackets; ``--config`` / ``-c`` is
    repeated instead (each names one file).

    Example:
        >>> list_value_hint("unrecognized arguments: ldifs", ["demo", "--methods", "ft", "ldifs"])
        "; --methods takes one value, so 'ldifs' was left over (a list is --methods '[ft,ldifs]')"
    """
    match = re.match(r"unrecognized arguments: (\S+)", message, re.IGNORECASE)
    if not match or match.group(1).startswith("-"):
        return ""
    for index in range(len(argv) - 2):
        option, first, second = argv[index : index + 3]
        is_option = option.startswith("--") or option == "-c"
        if is_option and "=" not in option and second == match.group(1):
            if first.startswith("-"):
                return ""
            values = [first, second]
            for token in argv[index + 3 :]:
                if token.startswith("-"):
                    break
                values.append(token)
            if option in ("--config", "-c"):
                written = " ".join(f"{option} {value}" for value in values)
                return f"; {option} takes one file or name: repeat it ({written})"
            written = f"{option} '[{','.join(values)}]'"
            return f"; {option} takes one value, so {second!r} was left over (a list is {written})"
    return ""


@contextlib.contextmanager
def errors_as_one_line(argv: Sequence[str] | None = None) -> Iterator[None]:
    """Turn a user error raised inside the block into ``error: <message>`` and exit status 2.

    With ``LDIFS_TRACEBACK=1`` the error propagates unchanged (full traceback). ``argv`` (the
    command line) lets the message say how to write a list for ``--option a b``.
    """
    try:
        yield
    except USER_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") or getattr(error, _RUN_ERROR, False):
            raise
        message = one_line_message(error)
        message += list_value_hint(message, sys.argv[1:] if argv is None else argv)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None
