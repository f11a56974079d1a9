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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _ft_cell(ratio: float, absolute: str) -> str:
    return f"{ratio:.2f} ({absolute})"


def step_cost_table(entries: list[Report]) -> str:
    """One model's table: per method, step time and peak memory as ratios to FT per batch size
    (FT's row also gives its ms per step and MiB)."""
    sizes = [entry["batch_size"] for entry in entries]
    header = ["method"]
    for size in sizes:
        header += [f"time / FT, batch {size}", f"memory / FT, batch {size}"]
    rows = []
    for method in entries[0]["methods"]:
        cells = [method]
        for entry in entries:
            row = entry["methods"][method]
            time_ratio, memory_ratio = (
                f"{row['time_ratio_median']:.2f}",
                f"{row['memory_ratio']:.2f}",
            )
            if method == "FT":
                time_ratio = _ft_cell(
                    row["time_ratio_median"], f"{1000 * row['step_s_median']:,.0f} ms"
                )
                memory_ratio = _ft_cell(
                    row["memory_ratio"], f"{row['peak_bytes'] / 2**20:,.0f} MiB"
                )
            cells += [time_ratio, memory_ratio]
        rows.append(cells)
    return markdown_table(header, rows, ["left"] + ["right"] * (len(header) - 1))


def forgetting_cost_text(forgetting: Report) -> str:
    """The forgetting callback's cost per evaluation as a share of one epoch of the demo config."""
    suite = ", ".join(f"`{name}`" for name in forgetting["suite"])
    metrics = " and ".join(name.replace("_", "-") for name in forgetting["metrics"])
    caps = (forgetting["max_train_samples"], forgetting["max_test_samples"])
    data = (
        "whole splits"
        if caps == (None, None)
        else f"at most {caps[0]} train / {caps[1]} test images per domain"
    )
    epoch = forgetting["median_s"]["epoch_s"]
    return (
        f"On the demo config (`{forgetting['config']}`: `{forgetting['model']}` on "
        f"`{forgetting['task']}`, {forgetting['steps_per_epoch']} steps of batch "
        f"{forgetting['batch_size']} and a validation pass per epoch, {epoch:.1f} s per epoch), "
        f"each evaluation of its `ConceptForgettingCallback` ({suite}; {metrics}; {data}) costs "
        f"**{forgetting['later_share']:.2f}x** the time of an epoch. The first evaluation, which "
        "also builds the suite and measures the pre-trained model, costs "
        f"{forgetting['first_cold_share']:.2f}x with an empty feature cache and "
        f"{forgetting['first_warm_share']:.2f}x with a warm one (medians over "
        f"{_plural(len(forgetting['rounds']), 'epoch')})."
    )


def step_cost_benchmark(report: Report) -> str:
    """The setting, one ratio table per model and the forgetting callback's cost, from
    ``benchmarks/step_cost.py``'s report."""
    env, settings = report["environment"], report["settings"]
    where = (
        f"{env['device_name']} ({env['machine']}, {_plural(env['torch_threads'], 'torch thread')} "
        f"of {env['cpu_count']} CPUs)"
        if env["device"] == "cpu"
        else f"{env['device_name']} (CUDA {env.get('cuda')})"
    )
    intro = (
        f"Recorded on {where} with torch {env['torch']}, {settings['precision']}, random "
        f"weights, {settings['num_classes']} classes: medians over "
        f"{_plural(settings['repeats'], 'interleaved round')}, each ratio taken against FT in the "
        "same round; peak memory from the first round."
    )
    models: dict[str, list[Report]] = {}
    for entry in report["step"]:
        models.setdefault(entry["model"], []).append(entry)
    parts = [intro]
    for model, entries in models.items():
        parts += [f"`{model}`:", step_cost_table(entries)]
    noise = [
        e["methods"]["LS"]["time_ratio_median"] for e in report["step"] if "LS" in e["methods"]
    ]
    if noise:
        parts.append(
            "LS does FT's work (only the label smoothing of the loss differs), so the spread of "
            f"its time ratios, {min(noise):.2f} to {max(noise):.2f} here, shows the timing noise."
        )
    targets = ldifs_targets_table(report["step"])
    if targets:
        parts += ["LDIFS against its targets:", targets]
    if report.get("forgetting"):
        parts.append(forgetting_cost_text(report["forgetting"]))
    return "\n\n".join(parts)


#: LDIFS/FT step-time ceilings per model (the project's targets; not measured values).
LDIFS_TIME_TARGETS = {"ViT-B-32": 1.35, "ldifs-tiny-vit": 1.45}
#: LDIFS/FT peak memory may exceed 1 + (frozen copy bytes / FT peak) by at most this.
LDIFS_MEMORY_SLACK = 0.03


def ldifs_targets_table(entries: list[Report]) -> str:
    """LDIFS's time and memory ratios next to their targets, one row per model and batch size.

    Two memory limits: the project's target (FT's peak plus the frozen copy's bytes, plus the
    slack) and LDIFS's floor, which adds the one gradient per tap that exact LDIFS keeps from
    its forward to its backward (recorded as ``tap_gradient_bytes``).
    """
    rows = []
    for entry in entries:
        methods = entry["methods"]
        ceiling = LDIFS_TIME_TARGETS.get(entry["model"])
        if "LDIFS" not in methods or ceiling is None:
            continue
        ldifs, ft = methods["LDIFS"], methods["FT"]
        time_ratio = ldifs["time_ratio_median"]
        row = [
            f"`{entry['model']}`, batch {entry['batch_size']}",
            f"{time_ratio:.2f} (<= {ceiling:.2f}): {_met(time_ratio, ceiling)}",
        ]
        copy_bytes, ft_peak = ldifs.get("frozen_copy_bytes"), ft.get("peak_bytes")
        gradient_bytes = ldifs.get("tap_gradient_bytes")
        if copy_bytes is None or not ft_peak:
            row += ["not recorded", "not recorded"]
        else:
            ratio = ldifs["memory_ratio"]
            limit = 1.0 + copy_bytes / ft_peak + LDIFS_MEMORY_SLACK
            row.append(f"{ratio:.2f} (<= {limit:.2f}): {_met(ratio, limit)}")
            if gradient_bytes is None:
                row.append("not recorded")
            else:
                floor = limit + gradient_bytes / ft_peak
                share = f"taps {100 * gradient_bytes / ft_peak:.1f}% of FT's peak"
                row.append(f"{ratio:.2f} (<= {floor:.2f}; {share}): {_met(ratio, floor)}")
        rows.append(row)
    if not rows:
        return ""
    slack = f"{LDIFS_MEMORY_SLACK:.2f}"
    header = [
        "model",
        "LDIFS/FT time (target)",
        f"LDIFS/FT peak memory (target: 1 + copy / FT peak + {slack})",
        f"same (floor: 1 + (copy + one gradient per tap) / FT peak + {slack})",
    ]
    return markdown_table(header, rows)


def _met(value: float, limit: float) -> str:
    return "met" if value <= limit else "not met"


def reference_copy_benchmark(report: Report) -> str:
    """Checkpoint sizes, frozen-copy bytes and LDIFS values from ``reference_copy.py``'s report."""
    rows = []
    mib = 2**20
    for entry in report["models"]:
        sizes, params = entry["checkpoint_bytes"], entry["frozen_copy_parameter_bytes"]
        value = entry["ldifs_value"]
        rows.append(
            [
                f"`{entry['model_name']}` ({entry['pretrained_kind']})",
                f"{sizes['ft']['after'] / mib:,.1f}",
                f"{sizes['ldifs']['before'] / mib:,.1f} -> {sizes['ldifs']['after'] / mib:,.1f}",
                f"{params['float32'] / mib:,.1f} -> {params['bf16_mixed'] / mib:,.1f}",
                f"{value['rel_diff_bf16_copy']:.1e}",
                f"{value['rel_diff_all_parameters_bf16']:.1e}",
            ]
        )
    table = markdown_table(
        [
            "model",
            "FT checkpoint (MiB)",
            "LDIFS checkpoint before -> after (MiB)",
            "frozen copy fp32 -> bf16-mixed (MiB)",
            "LDIFS rel. change, bf16 copy",
            "same, every parameter bf16",
        ],
        rows,
    )
    return (
        f"Recorded with torch {report['torch']}, open_clip {report['open_clip']}; checkpoints "
        "after one fit step (AdamW state included), the LDIFS value on one batch of "
        f"{report['batch']} random images under CPU bf16 autocast, relative to the float32 copy "
        "under the same autocast:\n\n" + table
    )


def ldifs_overhead_benchmark(report: Report) -> str:
    """Where LDIFS's extra time and memory go, from ``ldifs_overhead.py``'s report."""
    rows = []
    mib = 2**20
    for case in report["cases"].values():
        seconds, extra = case["median_seconds"], case["extra_seconds"]
        ratio, floor = case["memory_ratio"], case["memory_floor"]
        rows.append(
            [
                f"`{case['model']}`, batch {case['batch']}",
                f"{seconds['ft'] * 1e3:,.0f} ms",
                f"{case['time_ratio']:.2f} (<= {case['time_target']:.2f}): "
                f"{_met(case['time_ratio'], case['time_target'])}",
                f"{extra['frozen_forward'] / seconds['ft']:.2f}",
                f"{extra['distance_forward_backward'] / seconds['ft']:.3f} "
                f"({extra['distance_forward_backward_autograd'] / seconds['ft']:.3f})",
                f"{ratio:.3f} (<= {case['memory_target']:.3f}): "
                f"{_met(ratio, case['memory_target'])}",
                f"{case['tap_gradient_bytes'] / mib:,.1f}",
                f"{ratio:.3f} (<= {floor:.3f}): {_met(ratio, floor)}",
            ]
        )
    intro = (
        f"Recorded with torch {report['torch']} on {report['machine']} ({report['threads']} torch "
        f"thread{'s' if report['threads'] != 1 else ''} of {report['cpus']} CPUs), 32-true, "
        "random weights: medians over "
        f"{report['rounds']} interleaved rounds of FT and LDIFS steps on one batch; times as "
        "shares of FT's step; peak memory at the allocator (`benchmarks/README.md`)."
    )
    header = [
        "model",
        "FT step",
        "LDIFS/FT time (target)",
        "frozen forward / FT step",
        "distance fwd+bwd / FT step (autograd)",
        "LDIFS/FT peak memory (target)",
        "one gradient per tap (MiB)",
        "same (floor)",
    ]
    return intro + "\n\n" + markdown_table(header, rows)
