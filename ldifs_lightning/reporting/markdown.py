"""Markdown tables and number formats shared by the renderers."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

_ALIGN = {"left": "---", "right": "---:", "center": ":---:"}


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> str:
    """A GitHub-flavoured Markdown table; ``|`` inside cells is escaped.

    Args:
        header: Column titles.
        rows: Cells per row, as many as ``header``.
        align: Per column ``left``, ``right`` or ``center`` (default: all ``left``).

    Example:
        >>> print(markdown_table(["a", "b"], [["1", "x|y"]], align=["right", "left"]))
        | a | b |
        | ---: | --- |
        | 1 | x\\|y |
    """
    align = list(align) if align is not None else ["left"] * len(header)
    if len(align) != len(header) or any(a not in _ALIGN for a in align):
        raise ValueError(
            f"align must give one of {sorted(_ALIGN)} per column ({len(header)}), got {align}"
        )
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {list(row)} has {len(row)} cells, the header {len(header)}")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line([_ALIGN[a] for a in align]), *map(line, rows)])


def signed(value: float, digits: int = 1) -> str:
    """``value`` with an explicit sign; a value that rounds to zero is ``0.0`` (no sign).

    Example:
        >>> signed(2.345), signed(-0.04), signed(-1.25, 2)
        ('+2.3', '0.0', '-1.25')
    """
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def short_float(value: float) -> str:
    """A learning rate or weight the way configs spell it: ``1e-3``, ``3e-4``, ``300``.

    Example:
        >>> short_float(0.001), short_float(2.5e-4), short_float(300.0), short_float(0.5)
        ('1e-3', '2.5e-4', '300', '0.5')
    """
    if value == 0 or abs(value) >= 1e-2:
        return f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def wrap_markdown(text: str, width: int = 100) -> str:
    """Fill the paragraphs and ``- `` list items of ``text`` to ``width`` columns (items continue
    indented by two spaces); tables (blocks starting with ``|``) are left as they are.

    Example:
        >>> print(wrap_markdown("one two three\\n\\n- four five six\\n\\n| a |", width=9))
        one two
        three
        <BLANKLINE>
        - four
          five
          six
        <BLANKLINE>
        | a |
    """
    blocks = []
    for block in text.split("\n\n"):
        if block.lstrip().startswith("|"):
            blocks.append(block)
            continue
        items: list[list[str]] = []
        for line in block.splitlines():
            if line.startswith("- ") or not items:
                items.append([line])
            else:
                items[-1].append(line.strip())
        blocks.append(
            "\n".join(
                textwrap.fill(
                    " ".join(item),
                    width,
                    subsequent_indent="  " if item[0].startswith("- ") else "",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                for item in items
            )
        )
    return "\n\n".join(blocks)
