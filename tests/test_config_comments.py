"""The shipped YAML configs' comments cannot drift from the code they document.

Every ``(default: VALUE)`` or ``(default: VALUE; note)`` comment above a key is checked against the
signature it documents: the ``__init__`` of the class named by the nearest ``class_path``, the
Trainer's ``__init__`` for ``trainer.*`` keys, and the CLI's seed default for ``seed_everything``.
Every file a comment names must exist in the repository.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightning.pytorch import Trainer

from ldifs_lightning.cli import DEFAULT_SEED
from ldifs_lightning.config_files import shipped_configs_dir

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(shipped_configs_dir().rglob("*.yaml"))
_DEFAULT = re.compile(r"\(default: ([^;()]*(?:\([^()]*\)[^;()]*)*)(?:;[^)]*)?\)")
_KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z_][\w+]*):(?P<value>.*)$")
_CITED_FILE = re.compile(r"[\w./-]+\.(?:md|py|yaml|json|ipynb)\b")


def _short(path: Path) -> str:
    return str(path.relative_to(shipped_configs_dir()))


def documented_defaults(path: Path) -> list[tuple[int, list[str], str]]:
    """``(line number, key path, documented default)`` for each ``(default: ...)`` comment.

    The key path runs from the top level to the key, list items included by their keys
    (``trainer.callbacks.init_args.suite``), so the owner of the key can be looked up.
    """
    found, comments = [], []
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        match = _KEY.match(line)
        if not match:
            comments = []
            continue
        indent = len(match["indent"]) + (2 if line.lstrip().startswith("- ") else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        keys = [key for _, key in stack] + [match["key"]]
        documented = _DEFAULT.findall(" ".join(comments))
        if documented:
            found.append((number, keys, documented[-1].strip()))
        comments = []
        stack.append((indent, match["key"]))
    return found


def _class_paths(path: Path) -> dict[tuple[str, ...], str]:
    """Key path of each mapping that holds a ``class_path`` -> that class path."""
    found: dict[tuple[str, ...], str] = {}

    def walk(node: Any, keys: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("class_path"), str):
                found[keys] = node["class_path"]
            for key, value in node.items():
                walk(value, (*keys, str(key)))
        elif isinstance(node, list):
            for item in node:
                walk(item, keys)

    walk(yaml.safe_load(path.read_text()), ())
    return found


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def signature_default(path: Path, keys: list[str]) -> tuple[str, Any]:
    """Who documents ``keys`` in ``path`` and its default there (``inspect.Parameter.empty``
    when the argument is required)."""
    key = keys[-1].removesuffix("+")
    if keys == ["seed_everything"]:
        return "LightningCLI(seed_everything_default=...)", DEFAULT_SEED
    if len(keys) == 1 and "tasks" in (yaml.safe_load(path.read_text()) or {}):
        # A continual run config (``ldifs continual --config ...``): the tool function's options.
        from ldifs_lightning.continual.runner import continual

        parameters = inspect.signature(continual).parameters
        assert key in parameters, f"{_short(path)}: ldifs continual has no option {key!r}"
        return "ldifs continual", parameters[key].default
    owners = _class_paths(path)
    if len(keys) >= 2 and keys[-2] == "init_args":
        class_path = owners[tuple(keys[:-2])]
        parameters = inspect.signature(_import(class_path).__init__).parameters
        owner = class_path
    elif len(keys) == 2 and keys[0] == "trainer":
        parameters, owner = inspect.signature(Trainer.__init__).parameters, "Trainer"
    else:
        raise AssertionError(f"{_short(path)}: no signature documents {'.'.join(keys)}")
    assert key in parameters, f"{_short(path)}: {owner} has no argument {key!r}"
    return owner, parameters[key].default


def same_value(documented: Any, actual: Any) -> bool:
    """Whether the YAML value a comment gives equals a signature's default."""
    if isinstance(actual, tuple | list):
        return (
            isinstance(documented, list)
            and len(documented) == len(actual)
            and all(same_value(d, a) for d, a in zip(documented, actual, strict=True))
        )
    if actual is None or isinstance(actual, bool):
        return documented is actual
    if isinstance(actual, int | float):
        try:
            return not isinstance(documented, bool) and float(documented) == float(actual)
        except (TypeError, ValueError):
            return False
    return str(documented) == str(actual)


CASES = [
    pytest.param(path, number, keys, text, id=f"{_short(path)}:{number}:{keys[-1]}")
    for path in CONFIGS
    for number, keys, text in documented_defaults(path)
]


def test_the_comments_document_defaults():
    assert len(CASES) > 100  # every shipped config documents its keys' defaults


@pytest.mark.parametrize(("path", "number", "keys", "text"), CASES)
def test_documented_default_matches_the_signature(path, number, keys, text):
    owner, actual = signature_default(path, keys)
    assert actual is not inspect.Parameter.empty, (
        f"{_short(path)}:{number}: {'.'.join(keys)} is required by {owner}, not defaulted"
    )
    documented = yaml.safe_load(text)
    assert same_value(documented, actual), (
        f"{_short(path)}:{number}: {'.'.join(keys)} says (default: {text}); {owner} has {actual!r}"
    )


def test_documented_defaults_are_found_under_their_keys(tmp_path):
    config = tmp_path / "example.yaml"
    config.write_text(
        "# Seed (default: 0).\nseed_everything: 1\ntrainer:\n  callbacks:\n"
        "    - class_path: a.B\n      init_args:\n        # Cap (default: 2000; seeded).\n"
        "        cap: 5\n"
    )
    assert documented_defaults(config) == [
        (2, ["seed_everything"], "0"),
        (8, ["trainer", "callbacks", "init_args", "cap"], "2000"),
    ]
    assert _class_paths(config) == {("trainer", "callbacks"): "a.B"}


@pytest.mark.parametrize(
    ("documented", "actual", "same"),
    [(1.0e-5, 1e-5, True), ("1e-5", 1e-5, True), (None, None, True), (False, None, False),
     ([0.0, 0.5], (0.0, 0.5), True), ("token", "token", True), (10, 10.0, True), (3, 2, False)],
)  # fmt: skip
def test_same_value(documented, actual, same):
    assert same_value(documented, actual) is same


@pytest.mark.parametrize("path", CONFIGS, ids=_short)
def test_configs_cite_only_files_in_the_repository(path):
    text = path.read_text()
    # Any cited file (a design note outside the repository included) must exist in it.
    for cited in _CITED_FILE.findall("\n".join(re.findall(r"#.*", text))):
        candidates = [REPO / cited, shipped_configs_dir() / cited, path.parent / cited]
        assert any(c.exists() for c in candidates), f"{_short(path)} cites {cited}, not in the repo"
