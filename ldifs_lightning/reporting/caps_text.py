"""What the forgetting suite's caps do, and what monitoring costs, from
``benchmarks/results/suite_caps.json`` (written by ``benchmarks/suite_caps.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldifs_lightning.reporting.markdown import markdown_table, signed

Report = Mapping[str, Any]


def _cap(value: int | None) -> str:
    return "all" if value is None else f"{value:,}"


def _threads(count: int) -> str:
    return f"{count} torch thread{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """A duration the way a table reads it: seconds, minutes or hours.

    Example:
        >>> duration(42.04), duration(754.0), duration(12_600.0)
        ('42 s', '12.6 min', '3.5 h')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def caps_table(data: Report) -> str:
    """Per domain and cap: A_LP and A_ZS of the pre-trained and fine-tuned encoders and the deltas.

    Accuracies are means over the seeds; each delta is the mean and, after ``±``, the standard
    deviation over the seeds (capped subsets and probe split), in percentage points.

    Example:
        >>> row = {"max_train_samples": None, "max_test_samples": None, "train_used": 4,
        ...        "test_used": 2, "mean": {"pretrained_lp": 50.0, "finetuned_lp": 25.0,
        ...        "delta_lp": -25.0, "pretrained_zs": 50.0, "finetuned_zs": 50.0,
        ...        "delta_zs": 0.0}, "std": {"delta_lp": 0.0, "delta_zs": 0.0}}
        >>> report = {"environment": {"torch": "2.5", "torch_threads": 1}, "seconds": 9.0,
        ...           "caps": {"model": "m", "pretrained": "p", "seeds": [0],
        ...                    "finetune": {"config": "ft.yaml", "task": "t", "epochs": 1},
        ...                    "domains": {"d": {"caps": [row]}}}}
        >>> print(caps_table(report).splitlines()[-1])
        | d | all / all | 4 / 2 | 50.0 | 25.0 | -25.0 ± 0.0 | 50.0 | 50.0 | 0.0 ± 0.0 |
    """
    caps, env = data["caps"], data["environment"]
    finetune = caps["finetune"]
    seeds = len(caps["seeds"])
    intro = (
        f"Recorded with torch {env['torch']}, {_threads(env['torch_threads'])} "
        f"({data['seconds']:.0f} s in all): `{caps['model']}` (`{caps['pretrained']}`) and its "
        f"image encoder after {finetune['epochs']} epoch{'' if finetune['epochs'] == 1 else 's'} "
        f"of `{finetune['config']}`'s fine-tuning on `{finetune['task']}`. Accuracies in %, "
        f"means over {seeds} seed{'' if seeds == 1 else 's'} (the seed draws the capped subsets "
        "and the probe's held-out split); each delta is the mean ± the standard deviation over "
        "the seeds."
    )
    rows = []
    for domain, entry in data["caps"]["domains"].items():
        for row in entry["caps"]:
            mean, std = row["mean"], row["std"]
            rows.append(
                [
                    domain,
                    f"{_cap(row['max_train_samples'])} / {_cap(row['max_test_samples'])}",
                    f"{row['train_used']:,} / {row['test_used']:,}",
                    f"{mean['pretrained_lp']:.1f}",
                    f"{mean['finetuned_lp']:.1f}",
                    f"{signed(mean['delta_lp'])} ± {std['delta_lp']:.1f}",
                    f"{mean['pretrained_zs']:.1f}",
                    f"{mean['finetuned_zs']:.1f}",
                    f"{signed(mean['delta_zs'])} ± {std['delta_zs']:.1f}",
                ]
            )
    table = markdown_table(
        [
            "domain",
            "cap train / test",
            "images used",
            "A_LP pre",
            "A_LP FT",
            "dLP",
            "A_ZS pre",
            "A_ZS FT",
            "dZS",
        ],
        rows,
        ["left", "left"] + ["right"] * 7,
    )
    return f"{intro}\n\n{table}"


def monitoring_cost_table(data: Report) -> str:
    """Per paper data config: estimated LDIFS epoch, per-epoch monitoring and end-of-fit cost.

    Example:
        >>> cost = {"note": "Estimates.", "estimate_model": "M",
        ...         "forward_s_per_image": {"M": 0.05}, "forward_batch_size": {"M": 16},
        ...         "configs": [{"config": "c.yaml", "task": "t", "train_images": 9000,
        ...                      "val_images": 1000, "suite": ["a", "b"],
        ...                      "monitor_images": 6000, "epoch_s_ldifs": 1850.0,
        ...                      "monitor_s": 310.0, "monitor_share_of_ldifs_epoch": 0.1676,
        ...                      "final_full_images": 20000, "final_full_forward_s": 1000.0}]}
        >>> print(monitoring_cost_table({"monitoring_cost": cost}).splitlines()[-1])
        | c.yaml | t | 9,000 + 1,000 | 2 | 6,000 | 30.8 min | 5.2 min | 0.17x | 20,000 | 16.7 min |
    """
    cost = data["monitoring_cost"]
    forward = ", ".join(
        f"`{model}` {1000 * seconds:.2f} ms (batch {cost['forward_batch_size'][model]})"
        for model, seconds in cost["forward_s_per_image"].items()
    )
    intro = (
        f"{cost['note']} Forward per image on this CPU: {forward}. Rows use "
        f"`{cost['estimate_model']}`."
    )
    rows = [
        [
            row["config"],
            row["task"],
            f"{row['train_images']:,} + {row['val_images']:,}",
            str(len(row["suite"])),
            f"{row['monitor_images']:,}",
            duration(row["epoch_s_ldifs"]),
            duration(row["monitor_s"]),
            f"{row['monitor_share_of_ldifs_epoch']:.2f}x",
            f"{row['final_full_images']:,}",
            duration(row["final_full_forward_s"]),
        ]
        for row in cost["configs"]
    ]
    table = markdown_table(
        [
            "config",
            "task",
            "train + val images",
            "suite datasets",
            "monitored images / epoch",
            "LDIFS epoch (est.)",
            "monitoring / epoch (est.)",
            "monitoring / LDIFS epoch",
            "whole-split images at the end",
            "their forwards (est.)",
        ],
        rows,
        ["left", "left"] + ["right"] * 8,
    )
    return f"{intro}\n\n{table}"
