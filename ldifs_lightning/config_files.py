"""The YAML configs that ship with the package, and ``--config`` values that name them.

The repository's ``configs/`` folder is installed as ``ldifs_lightning/configs/`` (see
``setup.py``), so ``ldifs fit --config demo/ldifs`` works from any directory after
``pip install ldifs-lightning``. A ``--config`` value is, in this order:

1. a file that exists (relative to the working directory), used as given;
2. the name of a shipped config: its path under ``configs/``, with or without ``.yaml`` and with
   or without a leading ``configs/`` (``demo/ldifs``, ``methods/ft.yaml``,
   ``configs/data/eurosat.yaml``);
3. a YAML/JSON string holding the config itself (jsonargparse's own convention).

Anything else fails with one line listing the shipped names.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile

_SUFFIX = ".yaml"
_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_configs_dir() -> Path:
    """The folder holding the shipped configs.

    An installed wheel carries them in ``ldifs_lightning/configs/``; a source checkout (an
    editable install, or the repository on ``sys.path``) has them in the repository's
    ``configs/``, next to the package.

    Example:
        >>> (shipped_configs_dir() / "demo" / "ldifs.yaml").is_file()
        True
    """
    for folder in (_PACKAGE_DIR / "configs", _PACKAGE_DIR.parent / "configs"):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"no configs folder in {_PACKAGE_DIR} or next to it; reinstall ldifs-lightning"
    )


def shipped_config_names() -> list[str]:
    """Names of the shipped configs (``demo/ldifs``, ``methods/ft``, ...), sorted.

    Example:
        >>> "demo/ldifs" in shipped_config_names()
        True
    """
    root = shipped_configs_dir()
    return sorted(
        path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.yaml")
    )


def shipped_config(name: str) -> Path | None:
    """The shipped config called ``name``, or ``None``.

    ``name`` is a path under ``configs/``, with or without ``.yaml`` and a leading ``configs/``.

    Example:
        >>> shipped_config("configs/demo/ldifs.yaml") == shipped_config("demo/ldifs")
        True
    """
    relative = name.replace("\\", "/").removeprefix("./").removeprefix("configs/")
    if not relative or relative.startswith("/") or ".." in relative.split("/"):
        return None
    root = shipped_configs_dir()
    for candidate in (root / relative, root / f"{relative}{_SUFFIX}"):
        if candidate.suffix == _SUFFIX and candidate.is_file():
            return candidate
    return None


def _is_inline_config(value: str) -> bool:
    """Whether ``value`` is a YAML/JSON mapping given on the command line, not a name."""
    try:
        return isinstance(yaml.safe_load(value), dict)
    except yaml.YAMLError:
        return False


def _close_config_names(wanted: str, names: list[str]) -> list[str]:
    """Shipped names like ``wanted``: the same file name in any folder (``ldifs`` ->
    ``methods/ldifs``, ``demo/ldifs``), then close spellings of the whole name or of its file
    name (``lp-ft`` -> ``methods/lp_ft``); at most four."""
    file_name = wanted.rsplit("/", 1)[-1]
    files = {name: name.rsplit("/", 1)[-1] for name in names}
    similar_files = difflib.get_close_matches(file_name, sorted(set(files.values())), cutoff=0.75)
    found = [name for name, file in files.items() if file == file_name]
    found += difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    found += [name for name, file in files.items() if file in similar_files]
    return list(dict.fromkeys(found))[:4]


def resolve_config(value: str | Path) -> str:
    """What ``--config value`` reads: a file path, or the inline config string itself.

    Raises:
        FileNotFoundError: ``value`` is neither a file, a shipped config name, nor an inline
            config; the message suggests close shipped names and where the others are.

    Example:
        >>> Path(resolve_config("demo/ldifs")).name
        'ldifs.yaml'
    """
    text = str(value)
    if Path(text).expanduser().is_file():
        return text
    shipped = shipped_config(text)
    if shipped is not None:
        return str(shipped)
    if _is_inline_config(text):
        return text
    names = shipped_config_names()
    relative = text.removeprefix("configs/").removesuffix(_SUFFIX)
    close = _close_config_names(relative, names)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    folders = sorted({name.split("/")[0] for name in names if "/" in name})
    raise FileNotFoundError(
        f"config {text!r} is neither a file in {Path.cwd()} nor a shipped config; {hint}the "
        f"{len(names)} shipped configs are the YAML files under {shipped_configs_dir()}, named "
        f"by folder/file: {', '.join(f'{folder}/...' for folder in folders)} (e.g. data/eurosat, "
        "methods/ldifs)"
    )


def config_base(path: str | Path) -> Path | None:
    """The config that the YAML file ``path`` builds on (its top-level ``config:`` key), or None.

    The value is a path relative to ``path``'s folder, as jsonargparse reads it.

    Raises:
        FileNotFoundError: the named base does not exist.

    Example:
        >>> config_base(shipped_config("methods/ldifs")).name
        'vit_b32.yaml'
    """
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # not a readable YAML file: jsonargparse reports it
    base = loaded.get("config") if isinstance(loaded, dict) else None
    if not isinstance(base, str):
        return None
    resolved = (Path(path).expanduser().parent / Path(base).expanduser()).resolve()
    if not resolved.is_file():
        raise FileNotFoundError(
            f"{path}: config: {base!r} is not a file (it is read relative to {Path(path).parent})"
        )
    return resolved


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


class ConfigFileOrName(ActionConfigFile):
    """jsonargparse's ``--config`` action, taking a shipped config's name as well as a path, and
    applying the config a file builds on (its top-level ``config:`` key) first, key by key.

    jsonargparse alone reads a ``config:`` key inside a YAML file by loading that file, but then
    lets each top-level section of the outer file (``trainer:``, ``model:``) replace the whole
    section of the base. Here the base is applied as if it had been passed as an earlier
    ``--config``, and the outer file, without its ``config:`` key, then merges into it key by key
    (read from its own folder, so relative paths in it mean what they mean in a file).

    Example:
        >>> from jsonargparse import ArgumentParser
        >>> parser = ArgumentParser()
        >>> _ = parser.add_argument("--config", action=ConfigFileOrName)
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        cfg: Any,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        resolved = resolve_config(values)
        chain = [Path(resolved)] if Path(resolved).expanduser().is_file() else []
        while chain and (base := config_base(chain[-1])) is not None:
            if base in chain:
                raise ValueError(f"config {values!r}: its config: bases form a cycle at {base}")
            chain.append(base)
        if len(chain) < 2:
            self.apply_config(parser, cfg, self.dest, resolved)
            return
        self.apply_config(parser, cfg, self.dest, str(chain[-1]))  # the deepest base, as a file
        for path in reversed(chain[:-1]):
            content = yaml.safe_load(path.read_text())
            content.pop("config")
            with _working_directory(path.parent):
                self.apply_config(parser, cfg, self.dest, yaml.safe_dump(content, sort_keys=False))
