"""benchmarks/step_cost.py: smoke report shape, bad arguments, the methods it builds from their
configs, peak-memory accounting, rendering."""

import importlib.util
import json
import math
import re
import statistics
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from ldifs_lightning.modules import FineTuneModule, FLYPModule
from ldifs_lightning.regularizers import L2SP, LDIFS
from ldifs_lightning.reporting import benchmark_text
from tests.conftest import TINY_VIT

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("step_cost", REPO / "benchmarks" / "step_cost.py")
step_cost = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(step_cost)


def _positive_finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_smoke_run_writes_a_well_formed_report(tmp_path):
    out = tmp_path / "step_cost.json"
    returned = step_cost.main(["--smoke", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["benchmark"] == "step_cost" and report["settings"]["smoke"] is True
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch_threads"] == 1 and env["device_name"]
    assert [(e["model"], e["batch_size"]) for e in report["step"]] == [
        ("ldifs-tiny-vit", 4),
        ("ldifs-tiny-vit", 8),
    ]
    for entry in report["step"]:
        assert list(entry["methods"]) == list(step_cost.METHODS)  # every method, FT first
        for row in entry["methods"].values():
            assert len(row["step_s"]) == len(row["time_ratio_to_ft"]) == 1
            assert all(map(_positive_finite, [*row["step_s"], row["peak_bytes"]]))
            assert row["images_per_s"] == pytest.approx(entry["batch_size"] / row["step_s_median"])
        ft = entry["methods"]["FT"]
        assert ft["time_ratio_median"] == ft["memory_ratio"] == 1.0
        ldifs = entry["methods"]["LDIFS"]
        assert ldifs["memory_ratio"] == pytest.approx(ldifs["peak_bytes"] / ft["peak_bytes"])
        # The frozen copy's weights alone make LDIFS's step hold more than FT's.
        assert ldifs["peak_bytes"] > ft["peak_bytes"]
        assert (ft["frozen_copy_dtype"], ldifs["frozen_copy_dtype"]) == (None, "torch.float32")
    forgetting = report["forgetting"]
    (only,) = forgetting["rounds"]
    assert forgetting["later_share"] == pytest.approx(only["later_s"] / only["epoch_s"])
    assert forgetting["suite"] == ["digits", "fashion", "shapes"]
    assert forgetting["steps_per_epoch"] == 2
    text = benchmark_text.step_cost_benchmark(report)
    assert env["device_name"] in text and "| LDIFS |" in text and "`ldifs-tiny-vit`:" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repeats", "0"], "--repeats: 0 is not allowed, give a number >= 1"),
        (["--batch-sizes", "8", "0"], "--batch-sizes: 0 is not allowed, give a number >= 1"),
        (["--steps", "two"], "--steps: 'two' is not a whole number"),
        (["--models", "ViT-B-33"], "--models: unknown model 'ViT-B-33' (close matches:"),
        (["--methods", "LDIFS"], "--methods must include FT"),
        (["--methods", "SGD"], "--methods: invalid choice: 'SGD'"),
    ],
)
def test_bad_arguments_fail_in_one_line_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        step_cost.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("step_cost.py: error: ") and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_a_device_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        step_cost.parse_args(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "no CUDA device is visible" in capsys.readouterr().err


def test_gpu_script_checks_its_argument_and_the_device(tmp_path):
    script = REPO / "benchmarks" / "gpu.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "give exactly one argument" in usage.stderr
    if torch.cuda.is_available():
        return
    run = subprocess.run(
        ["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True
    )
    assert run.returncode == 1 and "no CUDA device is visible" in run.stderr
    assert not (tmp_path / "out").exists()  # fails before writing anything


def test_methods_are_built_from_the_method_configs():
    built = {method: step_cost.build_module(method, TINY_VIT) for method in step_cost.METHODS}
    for method, module in built.items():
        assert module.encoder_source.pretrained is None, method  # random weights
        assert module.model_name == TINY_VIT and module.training, method
        spec = step_cost.method_spec(method)
        assert not {"model_name", "pretrained"} & set(spec["init_args"]), method

    def terms(method):
        return [(type(r), r.weight) for r in built[method].regularizers]

    assert terms("LDIFS") == [(LDIFS, 10.0)]
    assert terms("L2SP") == [(L2SP, 0.5)]
    for method in ("FT", "LS", "FLYP", "FLYP-CE", "LP"):
        assert terms(method) == [], method
    for method in ("FT", "LS", "L2SP", "LDIFS", "LP"):
        assert isinstance(built[method], FineTuneModule), method
    assert [built[m].label_smoothing for m in ("FT", "LS")] == [0.0, 0.1]
    assert [(type(built[m]), built[m].loss) for m in ("FLYP", "FLYP-CE")] == [
        (FLYPModule, "contrastive"),
        (FLYPModule, "cross_entropy"),
    ]
    lp = built["LP"]
    assert (lp.freeze_encoder, lp.head_init) == (True, "zeroshot")
    assert not any(p.requires_grad for p in lp.image_encoder.parameters())
    assert not any(built[m].freeze_encoder for m in step_cost.METHODS if m != "LP")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"class_path": "ldifs_lightning.LDIFSModule", "init_args": {"trainable": "head"}},
            r"lp\.yaml: LDIFSModule takes no argument \['trainable'\]; allowed: \[",
        ),
        (
            {"class_path": "torch.nn.Linear"},
            r"lp\.yaml: model\.class_path 'torch\.nn\.Linear' is not a fine-tuning module",
        ),
        ({"init_args": {}}, r"lp\.yaml: no model\.class_path"),
    ],
    ids=["unknown_argument", "not_a_fine_tuner", "no_class_path"],
)
def test_a_method_config_the_benchmark_cannot_build_fails_in_one_line(
    model, message, tmp_path, monkeypatch, capsys
):
    (tmp_path / "lp.yaml").write_text(yaml.safe_dump({"model": model}))
    monkeypatch.setattr(step_cost, "METHOD_CONFIGS", tmp_path)
    with pytest.raises(ValueError, match=message) as error:
        step_cost.build_module("LP", TINY_VIT)
    assert "\n" not in str(error.value)

    # The command line checks every chosen method's config before measuring anything.
    ft = {"class_path": "ldifs_lightning.modules.FineTuneModule"}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump({"model": ft}))
    with pytest.raises(SystemExit) as exit_info:
        step_cost.parse_args(["--methods", "FT", "LP"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("step_cost.py: error: --methods LP: ") and re.search(message, err)


@pytest.mark.parametrize(
    ("method_model", "expected"),
    [
        (  # same class: the method's values win, the base's others stay
            {"class_path": "ldifs_lightning.LDIFSModule", "init_args": {"warmup_steps": 9}},
            {
                "class_path": "ldifs_lightning.LDIFSModule",
                "init_args": {"ldifs_weight": 3.0, "lr": 0.5, "warmup_steps": 9},
            },
        ),
        (  # another class: the base's arguments it does not take (ldifs_weight) are dropped
            {
                "class_path": "ldifs_lightning.modules.FLYPModule",
                "init_args": {"loss": "cross_entropy", "warmup_steps": 9},
            },
            {
                "class_path": "ldifs_lightning.modules.FLYPModule",
                "init_args": {"lr": 0.5, "warmup_steps": 9, "loss": "cross_entropy"},
            },
        ),
    ],
    ids=["same_class", "other_class"],
)
def test_a_config_includes_its_base_config(method_model, expected, tmp_path):
    base = {
        "trainer": {"precision": "32-true"},
        "model": {
            "class_path": "ldifs_lightning.LDIFSModule",
            "init_args": {"ldifs_weight": 3.0, "lr": 0.5, "warmup_steps": 7},
        },
    }
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.yaml").write_text(yaml.safe_dump(base))
    method = tmp_path / "methods" / "m.yaml"
    method.parent.mkdir()
    # ``config:`` first, as in configs/methods/: the method's own keys come after the base's.
    method.write_text("config: ../base/b.yaml\n" + yaml.safe_dump({"model": method_model}))
    assert step_cost.model_section(method) == expected


def test_cpu_peak_is_resident_plus_the_highest_net_allocation():
    kept = []

    def step():
        first = torch.empty(1_000_000)  # 4 MB
        second = torch.empty(2_000_000)  # 8 MB: 12 MB live, the peak
        del first
        kept.append((second, torch.empty(500_000)))  # 10 MB live at the end

    peak = step_cost.cpu_peak_bytes(step, resident=1_000)
    assert 1_000 + 12_000_000 <= peak <= 1_000 + 12_000_000 + 64 * 1024


def test_live_tensor_bytes_counts_each_storage_once():
    module = torch.nn.Linear(10, 5)
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.randn(2, 10)).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    params = (10 * 5 + 5) * 4
    state = sum(
        value.untyped_storage().nbytes()
        for per_param in optimizer.state.values()
        for value in per_param.values()
    )
    assert state >= 2 * params  # exp_avg and exp_avg_sq per parameter, plus the step counters
    view = module.weight[0]  # shares the weight's storage: not counted again
    assert step_cost.live_tensor_bytes(module, optimizer, view) == params + state


def test_bf16_autocast_path_runs_every_regulariser():
    results = {
        method: step_cost.measure_method(
            method, "ldifs-tiny-vit", [4], torch.device("cpu"), "bf16-mixed", 1, True
        )[4]
        for method in ("FT", "LDIFS", "L2SP")
    }
    assert all(r["steps"] == 1 and r["peak_bytes"] > 0 for r in results.values())
    # One gradient per LDIFS tap of the tiny ViT (width 64, 32 px, patch 8): ln_pre and the 4
    # blocks, each 16 patches + the class token; in the taps' dtype, bf16 under CPU autocast.
    assert results["LDIFS"]["tap_gradient_bytes"] == 4 * 64 * (5 * 17) * 2
    assert results["FT"]["tap_gradient_bytes"] is None


def test_ratios_are_per_round_against_ft_then_the_median(monkeypatch):
    # Per round LDIFS / FT = 1.1, 2.0, 1.2: median 1.2, unlike the ratio of the median times
    # (2.2 / 2.0 = 1.1), which would pair rounds with different machine load.
    times = {"FT": iter([2.0, 1.0, 5.0]), "LDIFS": iter([2.2, 2.0, 6.0])}
    peaks = {"FT": 100, "LDIFS": 130}

    def fake(method, model_name, batch_sizes, device, precision, steps, measure_memory):
        peak = peaks[method] if measure_memory else None
        return {
            size: {
                "step_s": next(times[method]),
                "steps": 1,
                "peak_bytes": peak,
                "frozen_copy_dtype": None,
                "frozen_copy_bytes": 40 if method == "LDIFS" else 0,
                "tap_gradient_bytes": 20 if method == "LDIFS" else None,
            }
            for size in batch_sizes
        }

    monkeypatch.setattr(step_cost, "measure_method", fake)
    (entry,) = step_cost.step_cost("m", [8], ["FT", "LDIFS"], 3, torch.device("cpu"), "32-true", 1)
    ldifs = entry["methods"]["LDIFS"]
    assert ldifs["time_ratio_to_ft"] == [2.2 / 2.0, 2.0 / 1.0, 6.0 / 5.0]
    assert ldifs["time_ratio_median"] == statistics.median([2.2 / 2.0, 2.0, 6.0 / 5.0])
    assert ldifs["time_ratio_median"] == pytest.approx(1.2)
    assert ldifs["step_s_median"] == 2.2 and ldifs["images_per_s"] == 8 / 2.2
    assert ldifs["memory_ratio"] == 1.3 and ldifs["peak_bytes"] == 130
    assert ldifs["frozen_copy_bytes"] == 40 and ldifs["tap_gradient_bytes"] == 20


REPORT = {
    "settings": {"precision": "32-true", "num_classes": 10, "repeats": 3},
    "environment": {
        "device": "cpu",
        "device_name": "Some CPU",
        "machine": "x86_64",
        "torch_threads": 1,
        "cpu_count": 2,
        "torch": "2.14.1",
    },
    "step": [
        {
            "model": "tiny",
            "batch_size": size,
            "methods": {
                "FT": {
                    "time_ratio_median": 1.0,
                    "memory_ratio": 1.0,
                    "step_s_median": seconds,
                    "peak_bytes": mib * 2**20,
                },
                "LS": {
                    "time_ratio_median": noise,
                    "memory_ratio": 1.0,
                    "step_s_median": 9.0,
                    "peak_bytes": 1,
                },
                "LDIFS": {
                    "time_ratio_median": ratio,
                    "memory_ratio": 1.256,
                    "step_s_median": 9.0,
                    "peak_bytes": 1,
                },
            },
        }
        for size, seconds, mib, ratio, noise in (
            (8, 0.0123, 3, 1.314, 1.041),
            (32, 1.5, 1500, 1.186, 0.962),
        )
    ],
    "forgetting": {
        "config": "configs/demo/ldifs.yaml",
        "model": "tiny",
        "task": "textures",
        "steps_per_epoch": 34,
        "batch_size": 64,
        "suite": ["digits", "shapes"],
        "metrics": ["linear_probe", "zero_shot"],
        "max_train_samples": None,
        "max_test_samples": None,
        "median_s": {"epoch_s": 5.62},
        "later_share": 0.731,
        "first_cold_share": 1.9,
        "first_warm_share": 0.958,
        "rounds": [{}, {}, {}],
    },
}


def test_step_cost_text_exact():
    assert benchmark_text.step_cost_benchmark(REPORT) == (
        "Recorded on Some CPU (x86_64, 1 torch thread of 2 CPUs) with torch 2.14.1, 32-true, "
        "random weights, 10 classes: medians over 3 interleaved rounds, each ratio taken against "
        "FT in the same round; peak memory from the first round.\n\n"
        "`tiny`:\n\n"
        "| method | time / FT, batch 8 | memory / FT, batch 8 | time / FT, batch 32 | "
        "memory / FT, batch 32 |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| FT | 1.00 (12 ms) | 1.00 (3 MiB) | 1.00 (1,500 ms) | 1.00 (1,500 MiB) |\n"
        "| LS | 1.04 | 1.00 | 0.96 | 1.00 |\n"
        "| LDIFS | 1.31 | 1.26 | 1.19 | 1.26 |\n\n"
        "LS does FT's work (only the label smoothing of the loss differs), so the spread of its "
        "time ratios, 0.96 to 1.04 here, shows the timing noise.\n\n"
        "On the demo config (`configs/demo/ldifs.yaml`: `tiny` on `textures`, 34 steps of batch 64 "
        "and a validation pass per epoch, 5.6 s per epoch), each evaluation of its "
        "`ConceptForgettingCallback` (`digits`, `shapes`; linear-probe and zero-shot; whole "
        "splits) costs **0.73x** the time of an epoch. The first evaluation, which also builds "
        "the suite and measures the pre-trained model, costs 1.90x with an empty feature cache "
        "and 0.96x with a warm one (medians over 3 epochs)."
    )


def test_ldifs_targets_are_judged_against_the_frozen_copy_allowance_and_the_floor():
    def entry(model, time_ratio, memory_ratio, copy_bytes, gradient_bytes=None):
        ldifs = {"time_ratio_median": time_ratio, "memory_ratio": memory_ratio}
        if copy_bytes is not None:
            ldifs["frozen_copy_bytes"] = copy_bytes
            ldifs["tap_gradient_bytes"] = gradient_bytes
        return {
            "model": model,
            "batch_size": 8,
            "methods": {"FT": {"peak_bytes": 1000}, "LDIFS": ldifs},
        }

    table = benchmark_text.ldifs_targets_table(
        [
            # memory target 1 + 0.28 + 0.03 = 1.31; floor 1.31 + 0.02 = 1.33
            entry("ViT-B-32", 1.36, 1.30, 280, 20),
            # target 1 + 0.1 + 0.03 = 1.13; floor 1.13 + 0.05 = 1.18
            entry("ldifs-tiny-vit", 1.45, 1.20, 100, 50),
            entry("ldifs-tiny-vit", 1.45, 1.16, 100, 50),
            entry("ldifs-tiny-vit", 1.40, 1.10, None),
            entry("ldifs-tiny-vit", 1.40, 1.10, 100),
            entry("not-a-target-model", 9.0, 9.0, 0),
        ]
    )
    rows = table.splitlines()[2:]
    assert rows == [
        "| `ViT-B-32`, batch 8 | 1.36 (<= 1.35): not met | 1.30 (<= 1.31): met | "
        "1.30 (<= 1.33; taps 2.0% of FT's peak): met |",
        "| `ldifs-tiny-vit`, batch 8 | 1.45 (<= 1.45): met | 1.20 (<= 1.13): not met | "
        "1.20 (<= 1.18; taps 5.0% of FT's peak): not met |",
        "| `ldifs-tiny-vit`, batch 8 | 1.45 (<= 1.45): met | 1.16 (<= 1.13): not met | "
        "1.16 (<= 1.18; taps 5.0% of FT's peak): met |",
        "| `ldifs-tiny-vit`, batch 8 | 1.40 (<= 1.45): met | not recorded | not recorded |",
        "| `ldifs-tiny-vit`, batch 8 | 1.40 (<= 1.45): met | 1.10 (<= 1.13): met | not recorded |",
    ]
