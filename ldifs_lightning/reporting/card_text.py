"""The shipped demo model's tables, from ``ldifs_lightning/pretrained/card.json`` (written by
``python -m ldifs_lightning.pretrained.build``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldifs_lightning.reporting.markdown import markdown_table

Card = Mapping[str, Any]


def card_file_line(card: Card) -> str:
    """Size and sha256 of the shipped weights."""
    size = card["size_bytes"]
    return (
        f"`{card['weights']}` is {size:,} bytes ({size / 2**20:.1f} MiB), sha256 "
        f"`{card['sha256']}` (also in `SHA256SUMS`, checked on every load)."
    )


def card_accuracy_table(card: Card) -> str:
    """Per domain: classes, test images, zero-shot and linear-probe accuracy (%, 2 decimals)."""
    rows = [
        [
            domain,
            str(card["domains"][domain]["classes"]),
            str(card["domains"][domain]["test_images"]),
            f"{accuracy['zs_acc']:.2f}",
            f"{accuracy['lp_acc']:.2f}",
        ]
        for domain, accuracy in card["accuracy"].items()
    ]
    header = ["domain", "classes", "test images", "zero-shot", "linear probe"]
    return markdown_table(header, rows, ["left"] + ["right"] * 4)


def demo_domains_table(card: Card) -> str:
    """The README's domain table: classes, split sizes, and the demo model's accuracies."""
    rows = [
        [
            f"`{domain}`",
            str(card["domains"][domain]["classes"]),
            f"{card['domains'][domain]['train_images']} / {card['domains'][domain]['test_images']}",
            f"{accuracy['zs_acc']:.1f} / {accuracy['lp_acc']:.1f}",
        ]
        for domain, accuracy in card["accuracy"].items()
    ]
    header = ["name", "classes", "train / test", "zero-shot / linear probe of `demo` (%)"]
    return markdown_table(header, rows, ["left", "right", "right", "right"])
