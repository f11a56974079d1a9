"""The README's Performance numbers, from ``benchmarks/results/*.json`` (written by the scripts in
``benchmarks/``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldifs_lightning.reporting.markdown import markdown_table

Report = Mapping[str, Any]


def probe_benchmark(report: Report) -> str:
    """The setting, the ours-vs-scikit-learn table and the one-thread ratios of
    ``benchmarks/linear_probe_vs_sklearn.py``'s report."""
    env, settings = report["environment"], report["settings"]
    cap = env["threads_cap"]
    threading = (
        f"both sides capped to {cap} threads"
        if cap
        else "each side with its faster threading setting (default pools or one thread)"
    )
    intro = (
        f"Recorded on {env['machine']} ({env['torch_default_threads']} default torch threads, "
        f"torch {env['torch']}, Python {env['python']}), best of {settings['repeat']} per side, "
        f"{threading}:"
    )
    rows = [
        [
            f"{r['n']:,} x {r['dim']}, {r['num_classes']} classes",
            f"{r['ours_s']:.2f} s",
            f"{r['sklearn_s']:.2f} s",
            f"{r['speedup']:.1f}x",
            f"{100 * r['ours_acc']:.2f} / {100 * r['sklearn_acc']:.2f}",
        ]
        for r in report["results"]
    ]
    table = markdown_table(
        ["features", "ours", "scikit-learn", "ratio", "test acc ours / sklearn"],
        rows,
        ["left", "right", "right", "right", "left"],
    )
    single = [
        min(r["sklearn_s_all_by_thread_cap"]["1"]) / min(r["ours_s_all_by_thread_cap"]["1"])
        for r in report["results"]
        if "1" in r["ours_s_all_by_thread_cap"] and "1" in r["sklearn_s_all_by_thread_cap"]
    ]
    text = f"{intro}\n\n{table}"
    if not cap and len(single) == len(report["results"]):
        ratios = " and ".join(f"{ratio:.1f}x" for ratio in single)
        text += f"\n\nWith both sides capped to one thread the ratios are {ratios}."
    return text


def cache_benchmark(report: Report) -> str:
    """Extractions and time of the second run vs the first, from ``benchmarks/feature_cache.py``'s
    report."""
    first, second = report["runs"][0], report["runs"][1]
    suite = ", ".join(f"`{name}`" for name in report["suite"])
    per_dataset = first["extractions"] / len(report["suite"])
    each = "" if len(report["suite"]) == 1 else f"{per_dataset:g} per dataset: "
    return (
        f"A second run of the same suite ({suite}) with the same pre-trained model "
        f"(`{report['model']}`) performs **{second['extractions']}** pre-trained feature "
        f"extractions; the first performs {first['extractions']} ({each}train and test). The "
        "second baseline measurement takes "
        f"{second['seconds'] / first['seconds']:.2f}x the first's time "
        f"({second['seconds']:.2f} s vs {first['seconds']:.2f} s), the rest being the probe."
    )
