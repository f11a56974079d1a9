"""Marked regions of a Markdown file: find one, render its block, swap it for new content.

A region is everything from a start line ``<!-- generated:NAME ... -->`` to the end line
``<!-- /generated:NAME -->`` (both at the start of a line); the renderer owns both lines and
everything between them.
"""

from __future__ import annotations

import re


class RegionError(ValueError):
    """A file's marker comments are missing, duplicated or out of order."""


def region_block(name: str, body: str, note: str = "") -> str:
    """The full text of region ``name``: start marker, blank line, body, blank line, end marker.

    Example:
        >>> print(region_block("t", "| a |", "from x.json"))
        <!-- generated:t from x.json; do not edit -->
        <BLANKLINE>
        | a |
        <BLANKLINE>
        <!-- /generated:t -->
    """
    note = f" {note};" if note else ";"
    return (
        f"<!-- generated:{name}{note} do not edit -->\n\n{body.strip(chr(10))}\n\n"
        f"<!-- /generated:{name} -->"
    )


def _span(text: str, name: str, where: str) -> tuple[int, int]:
    starts = list(re.finditer(rf"^<!-- generated:{re.escape(name)}[;\s].*?-->$", text, re.M))
    ends = list(re.finditer(rf"^<!-- /generated:{re.escape(name)} -->$", text, re.M))
    expected = f"a line '<!-- generated:{name} ... -->' and a later '<!-- /generated:{name} -->'"
    if not starts or not ends:
        raise RegionError(f"{where} has no region {name!r}: add {expected}")
    if len(starts) > 1 or len(ends) > 1:
        raise RegionError(f"{where} has region {name!r} more than once: keep one, {expected}")
    if ends[0].start() < starts[0].end():
        raise RegionError(f"{where}: region {name!r} ends before it starts: use {expected}")
    return starts[0].start(), ends[0].end()


def region_text(text: str, name: str, where: str = "the text") -> str:
    """The current block of region ``name`` in ``text``, markers included.

    Raises:
        RegionError: The region's markers are missing, duplicated or out of order (the message
            names ``where``).
    """
    start, end = _span(text, name, where)
    return text[start:end]


def replace_region(text: str, name: str, body: str, note: str = "", where: str = "the text") -> str:
    """``text`` with region ``name`` replaced by ``region_block(name, body, note)``.

    Example:
        >>> old = "x\\n<!-- generated:t -->\\nold\\n<!-- /generated:t -->\\ny\\n"
        >>> print(replace_region(old, "t", "new"))
        x
        <!-- generated:t; do not edit -->
        <BLANKLINE>
        new
        <BLANKLINE>
        <!-- /generated:t -->
        y
        <BLANKLINE>
    """
    start, end = _span(text, name, where)
    return text[:start] + region_block(name, body, note) + text[end:]
