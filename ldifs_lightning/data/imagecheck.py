"""Find image files that cannot be read, before training starts."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from PIL import Image

ImageCheck = Literal["header", "full", "none"]


def _problem(path: Path, check: ImageCheck) -> str | None:
    try:
        with Image.open(path) as image:
            if check == "full":
                image.load()
            else:
                image.verify()
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for bad files
        return str(error) or type(error).__name__
    return None


def find_unreadable_images(
    paths: Sequence[Path], check: ImageCheck = "header", num_threads: int = 8
) -> list[tuple[Path, str]]:
    """``(path, reason)`` for every file in ``paths`` that PIL cannot read, in input order.

    Args:
        paths: Image files.
        check: ``"header"`` opens each file and verifies its structure without decoding pixels
            (fast; catches empty, non-image and garbled files), ``"full"`` decodes every image
            (also catches truncated files; slower), ``"none"`` checks nothing.
        num_threads: Files checked in parallel (the work is mostly waiting on disk).
    """
    if check == "none" or not paths:
        return []
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        problems = list(pool.map(lambda path: _problem(path, check), paths))
    return [
        (path, problem)
        for path, problem in zip(paths, problems, strict=True)
        if problem is not None
    ]
