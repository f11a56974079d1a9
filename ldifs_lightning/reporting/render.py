"""Render every measured table of the README, docs/demo.md and the model card from committed JSON.

    python -m ldifs_lightning.reporting.render           # rewrite every marked region
    python -m ldifs_lightning.reporting.render --check   # exit 1 listing the stale regions

``REGIONS`` says which region of which file comes from which JSON, and ``SOURCES`` which command
writes each JSON. Files are rewritten only when every region of every file rendered, so a missing
JSON or marker leaves everything as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldifs_lightning.reporting import (
    benchmark_text,
    caps_text,
    card_text,
    compare_text,
    continual_text,
    demo_text,
)
from ldifs_lightning.reporting.markdown import wrap_markdown
from ldifs_lightning.reporting.regions import RegionError, region_block, region_text, replace_region

#: The repository (or, for an installed package, site-packages: only the model card is there).
ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m ldifs_lightning.reporting.render"

DEMO = "docs/results/demo.json"
SWEEP = "docs/results/lambda_sweep.json"
CONTINUAL = "docs/results/continual.json"
COMPARE = "docs/results/compare.json"
CARD = "ldifs_lightning/pretrained/card.json"
PROBE = "benchmarks/results/linear_probe.json"
CACHE = "benchmarks/results/feature_cache.json"
STEP = "benchmarks/results/step_cost.json"
REFERENCE = "benchmarks/results/reference_copy.json"
OVERHEAD = "benchmarks/results/ldifs_overhead.json"
CAPS = "benchmarks/results/suite_caps.json"
#: The commands that write each JSON (``make results`` runs the first three).
SOURCES: dict[str, str] = {
    DEMO: "make demo && cp runs/demo/summary.json docs/results/demo.json (or make results)",
    SWEEP: "ldifs demo --sweep --out runs/sweep && cp runs/sweep/summary.json "
    "docs/results/lambda_sweep.json (or make results)",
    COMPARE: "make compare && cp runs/compare/results.json docs/results/compare.json "
    "(or make results)",
    CONTINUAL: "make continual && cp runs/continual-comparison/comparison.json "
    "docs/results/continual.json (or make results)",
    CARD: "python -m ldifs_lightning.pretrained.build --card",
    PROBE: "python benchmarks/linear_probe_vs_sklearn.py",
    CACHE: "python benchmarks/feature_cache.py",
    STEP: "python benchmarks/step_cost.py (or make bench)",
    REFERENCE: "python benchmarks/reference_copy.py",
    OVERHEAD: "python benchmarks/ldifs_overhead.py --threads 1",
    CAPS: "python benchmarks/suite_caps.py",
}


@dataclass(frozen=True)
class Region:
    """One generated region: ``render(*loaded sources)`` is its Markdown body."""

    path: str
    name: str
    sources: tuple[str, ...]
    render: Callable[..., str]

    @property
    def note(self) -> str:
        return f"from {', '.join(self.sources)} by {COMMAND}"


README, DEMO_DOC, MODEL_CARD = (
    "README.md",
    "docs/demo.md",
    "ldifs_lightning/pretrained/MODEL_CARD.md",
)
REGIONS: tuple[Region, ...] = (
    Region(README, "demo-domains", (CARD,), card_text.demo_domains_table),
    Region(README, "demo-setting", (DEMO,), demo_text.run_environment),
    Region(README, "demo-table", (DEMO,), demo_text.comparison_table),
    Region(README, "demo-findings", (DEMO, CARD), demo_text.demo_findings),
    Region(README, "compare-setting", (COMPARE,), compare_text.setting),
    Region(README, "compare-table", (COMPARE,), compare_text.comparison_table),
    Region(README, "compare-findings", (COMPARE,), compare_text.findings),
    Region(README, "continual-setting", (CONTINUAL,), continual_text.setting),
    Region(README, "continual-table", (CONTINUAL,), continual_text.comparison_table),
    Region(README, "continual-findings", (CONTINUAL,), continual_text.findings),
    Region(README, "continual-matrices", (CONTINUAL,), continual_text.matrices),
    Region(README, "perf-step-cost", (STEP,), benchmark_text.step_cost_benchmark),
    Region(README, "perf-ldifs-overhead", (OVERHEAD,), benchmark_text.ldifs_overhead_benchmark),
    Region(README, "perf-reference-copy", (REFERENCE,), benchmark_text.reference_copy_benchmark),
    Region(README, "perf-linear-probe", (PROBE,), benchmark_text.probe_benchmark),
    Region(README, "perf-feature-cache", (CACHE,), benchmark_text.cache_benchmark),
    Region(README, "perf-suite-caps", (CAPS,), caps_text.caps_table),
    Region(README, "perf-monitoring-cost", (CAPS,), caps_text.monitoring_cost_table),
    Region(DEMO_DOC, "sweep-setting", (SWEEP,), demo_text.run_environment),
    Region(DEMO_DOC, "sweep-table", (SWEEP, DEMO), demo_text.sweep_table),
    Region(DEMO_DOC, "sweep-findings", (SWEEP, DEMO), demo_text.sweep_findings),
    Region(DEMO_DOC, "sweep-scale", (SWEEP,), demo_text.lambda_scale),
    Region(MODEL_CARD, "card-file", (CARD,), card_text.card_file_line),
    Region(MODEL_CARD, "card-accuracy", (CARD,), card_text.card_accuracy_table),
)


class RenderError(ValueError):
    """A JSON source is missing or lacks what a region needs, or a file's markers are wrong."""


def load_source(root: Path, source: str) -> Any:
    """The parsed JSON ``root/source``, or a RenderError naming the command that writes it."""
    path = root / source
    how = SOURCES.get(source, "the command that wrote it")
    if not path.is_file():
        raise RenderError(f"{source} is missing; write it with: {how}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RenderError(f"{source} is not valid JSON ({error}); rewrite it with: {how}") from None


def render_body(region: Region, root: Path) -> str:
    """The Markdown ``region`` should hold between its markers, rendered from its JSON."""
    loaded = [load_source(root, source) for source in region.sources]
    try:
        return wrap_markdown(region.render(*loaded))
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise RenderError(
            f"{region.path} region {region.name!r}: cannot render from {', '.join(region.sources)} "
            f"({type(error).__name__}: {error}); rewrite it with: {SOURCES.get(region.sources[0])}"
        ) from None


def _present(regions: Sequence[Region], root: Path) -> list[Region]:
    return [region for region in regions if (root / region.path).is_file()]


def rendered_files(regions: Sequence[Region], root: Path) -> dict[Path, str]:
    """``{file: its text with every region of ``regions`` re-rendered}`` (files that exist)."""
    texts: dict[Path, str] = {}
    for region in _present(regions, root):
        path = root / region.path
        body = render_body(region, root)
        try:
            texts[path] = replace_region(
                texts.get(path, path.read_text()), region.name, body, region.note, region.path
            )
        except RegionError as error:
            raise RenderError(str(error)) from None
    return texts


def stale_regions(regions: Sequence[Region], root: Path) -> list[str]:
    """``"<file> <region> (from <sources>)"`` for each region whose committed block differs from
    what its JSON renders."""
    stale = []
    for region in _present(regions, root):
        text = (root / region.path).read_text()
        try:
            current = region_text(text, region.name, region.path)
        except RegionError as error:
            raise RenderError(str(error)) from None
        if current != region_block(region.name, render_body(region, root), region.note):
            stale.append(f"{region.path} {region.name} (from {', '.join(region.sources)})")
    return stale


def write_regions(regions: Sequence[Region] = REGIONS, root: Path = ROOT) -> list[Path]:
    """Re-render ``regions`` into their files; return the files whose text changed. Nothing is
    written unless every region rendered."""
    changed = []
    for path, text in rendered_files(regions, root).items():
        if path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: render (default) or ``--check``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale regions, write nothing")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: this one)"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_regions(REGIONS, args.root)
            for line in stale:
                print(f"stale: {line}", file=sys.stderr)
            if stale:
                print(f"regenerate them with: {COMMAND}", file=sys.stderr)
            return 1 if stale else 0
        for path in write_regions(REGIONS, args.root):
            print(f"updated {path.relative_to(args.root)}")
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
