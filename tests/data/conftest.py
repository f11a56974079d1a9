"""Fixtures for the data tests: tiny on-disk copies of every dataset, and reversed file listing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data.fake_datasets import WRITERS, FakeCopy


@pytest.fixture(scope="session")
def fake_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FakeCopy]:
    """Every registered real dataset, written once per session under one shared root.

    Tests must not modify these files; tests that break a layout write their own copy.
    """
    root = tmp_path_factory.mktemp("datasets")
    return {name: write(root) for name, write in WRITERS.items()}


class _Listing:
    """What ``os.scandir`` returns: an iterator over directory entries that is a context manager."""

    def __init__(self, entries: list[os.DirEntry]) -> None:
        self.entries = iter(entries)

    def __iter__(self) -> Iterator[os.DirEntry]:
        return self

    def __next__(self) -> os.DirEntry:
        return next(self.entries)

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def reversed_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every directory listing (``os.scandir``, hence ``os.walk``, ``Path.rglob``, ...)
    return its entries in reverse name order, unlike any real file system's natural order."""
    real_scandir = os.scandir

    def scandir(path: str | Path = ".") -> _Listing:
        with real_scandir(path) as entries:
            return _Listing(sorted(entries, key=lambda entry: entry.name, reverse=True))

    monkeypatch.setattr(os, "scandir", scandir)
