"""Measured tables in README.md, docs/demo.md and MODEL_CARD.md equal what their JSON renders."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from ldifs_lightning.pretrained import DEMO_WEIGHTS
from ldifs_lightning.pretrained import build as card_build
from ldifs_lightning.reporting import benchmark_text, card_text, demo_text, render
from ldifs_lightning.reporting.markdown import markdown_table, short_float, signed, wrap_markdown
from ldifs_lightning.reporting.regions import RegionError, region_text, replace_region

REPO = Path(__file__).resolve().parents[1]


def test_committed_tables_equal_what_their_json_renders():
    files = {region.path for region in render.REGIONS}
    assert all((REPO / path).is_file() for path in files), files
    assert render.stale_regions(render.REGIONS, REPO) == []


def test_committed_demo_and_card_measured_the_same_pretrained_model_alike():
    # Both measure the shipped model on full splits with the same probe: a card or demo JSON
    # left over from an older probe or model shows up here.
    card = json.loads((REPO / render.CARD).read_text())["accuracy"]
    for name in (render.DEMO, render.SWEEP):
        for row in json.loads((REPO / name).read_text()).values():
            for domain, levels in row["pretrained"].items():
                for key, value in levels.items():
                    assert value == pytest.approx(card[domain][key], abs=0.006), (name, domain)


def test_every_marked_region_in_the_docs_is_rendered():
    names = {(region.path, region.name) for region in render.REGIONS}
    for path in {region.path for region in render.REGIONS}:
        text = (REPO / path).read_text()
        marked = re.findall(r"^<!-- generated:([\w-]+)", text, re.MULTILINE)
        assert {(path, name) for name in marked} <= names, path


# --- Markdown primitives ---------------------------------------------------------------------


def test_markdown_table_exact():
    table = markdown_table(["a", "b|c"], [["1", "x"], ["22", "y|z"]], ["right", "left"])
    assert table == "| a | b\\|c |\n| ---: | --- |\n| 1 | x |\n| 22 | y\\|z |"


def test_markdown_table_rejects_ragged_rows_and_bad_alignment():
    with pytest.raises(ValueError, match="has 1 cells, the header 2"):
        markdown_table(["a", "b"], [["1"]])
    with pytest.raises(ValueError, match="align must give one of"):
        markdown_table(["a"], [["1"]], ["middle"])


def test_number_formats():
    assert [signed(1.26), signed(-0.04), signed(-8.625, 2), signed(0.0)] == [
        "+1.3",
        "0.0",
        "-8.62",
        "0.0",
    ]
    assert [short_float(1e-3), short_float(3e-4), short_float(300.0)] == ["1e-3", "3e-4", "300"]


def test_wrap_markdown_fills_paragraphs_and_items_and_keeps_tables():
    text = "aaa bbb ccc ddd\n\n- eee fff\nggg hhh\n- iii\n\n| a long table row |"
    assert wrap_markdown(text, width=8) == (
        "aaa bbb\nccc ddd\n\n- eee\n  fff\n  ggg\n  hhh\n- iii\n\n| a long table row |"
    )


def test_replace_region_swaps_only_its_region():
    text = "# T\n<!-- generated:a -->\nold a\n<!-- /generated:a -->\nmid\n<!-- generated:b x -->\n"
    text += "old b\n<!-- /generated:b -->\nend\n"
    new = replace_region(text, "a", "| new |\n", "from a.json")
    assert new == (
        "# T\n<!-- generated:a from a.json; do not edit -->\n\n| new |\n\n<!-- /generated:a -->\n"
        "mid\n<!-- generated:b x -->\nold b\n<!-- /generated:b -->\nend\n"
    )
    assert region_text(new, "b") == "<!-- generated:b x -->\nold b\n<!-- /generated:b -->"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("no markers\n", "has no region 'a'"),
        ("<!-- generated:a -->\n<!-- /generated:a -->\n<!-- generated:a -->\n", "more than once"),
        ("<!-- /generated:a -->\n<!-- generated:a -->\n", "ends before it starts"),
        ("<!-- generated:ab -->\n<!-- /generated:ab -->\n", "has no region 'a'"),
    ],
)
def test_bad_markers_are_one_line_errors(text, match):
    with pytest.raises(RegionError, match=match) as error:
        replace_region(text, "a", "x", where="F.md")
    assert "\n" not in str(error.value) and "F.md" in str(error.value)


# --- Demo and sweep ----------------------------------------------------------------------------


def _row(lr, weight, acc, lp, zs, **extra):
    row = {
        "label": "x",
        "task": "textures",
        "lr": lr,
        "ldifs_weight": weight,
        "task_acc": acc,
        "task_test_images": 800,
        "mean_delta_lp": lp,
        "mean_delta_zs": zs,
        "domains": {"digits": {"delta_lp": lp - 0.04, "delta_zs": zs + 0.5}},
        "history": [{"epoch": 0, "mean_delta_lp": -11.04, "mean_delta_zs": -30.0}],
        "seconds": 30.4,
        "torch": "2.14.1",
        "threads": 1,
        "cpus": 2,
        "seed": 0,
        "train_log": {"train/ce": {"min": 0.3, "median": 0.45, "max": 0.8}},
    }
    row.update(extra)
    return row


DEMO = {
    "ft": _row(1e-3, 0.0, 76.62, -8.0, -20.0),
    "ldifs": _row(1e-3, 300.0, 75.74, -0.8, -2.0),
    "ft-low-lr": _row(1e-4, 0.0, 74.9, 0.5, -2.2),
}
CARD = {
    "weights": "demo-clip.pt",
    "sha256": "ab" * 32,
    "size_bytes": 3542873,
    "domains": {
        "digits": {"classes": 10, "train_images": 2600, "test_images": 400},
        "textures": {"classes": 8, "train_images": 2400, "test_images": 800},
    },
    "accuracy": {
        "digits": {"lp_acc": 65.0, "zs_acc": 64.5},
        "textures": {"lp_acc": 73.38, "zs_acc": 73.12},
    },
}


def test_comparison_table_exact():
    assert demo_text.comparison_table(DEMO) == (
        "| method | task acc | mean dLP | mean dZS | digits dLP / dZS |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| FT (lr 1e-3) | 76.6 | -8.0 | -20.0 | -8.0 / -19.5 |\n"
        "| LDIFS (lr 1e-3, lambda 300) | 75.7 | -0.8 | -2.0 | -0.8 / -1.5 |\n"
        "| FT (lr 1e-4) | 74.9 | +0.5 | -2.2 | +0.5 / -1.7 |"
    )


def test_demo_findings_quote_numbers_computed_from_the_rows():
    text = demo_text.demo_findings(DEMO, CARD)
    # LDIFS: 0.8 / 8.0 of FT's LP loss, 2.0 / 20.0 of its ZS loss, 76.62 - 75.74 below FT.
    assert (
        "LDIFS (lr 1e-3, lambda 300): 0.10 x FT's LP forgetting (-0.8) and 0.10 x FT's ZS" in text
    )
    assert "task accuracy 0.9 points below FT's" in text
    assert "FT (lr 1e-4): no LP forgetting (+0.5) and 0.11 x FT's ZS forgetting (-2.2)" in text
    assert "zero-shot accuracy there is 73.1%, from the model card)" in text
    assert "(800 images;" in text and "at -11.0 LP / -30.0 ZS" in text
    noise = 100 * math.sqrt(0.7662 * (1 - 0.7662) / 800)
    assert f"standard error of {noise:.1f} points" in text
    assert demo_text.run_environment(DEMO) == (
        "Recorded with torch 2.14.1, 1 torch thread on 2 CPUs, seed 0; the 3 runs took 91 s of "
        "fit + test on that machine."
    )


def test_demo_without_plain_ft_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'ft' run"):
        demo_text.comparison_table({"ldifs": DEMO["ldifs"]})


SWEEP = {
    "ft": DEMO["ft"],
    "ldifs-10": _row(1e-3, 10.0, 76.9, -4.0, -10.0),
    "ldifs-100": _row(1e-3, 100.0, 76.4, -2.4, -5.0),
    "ldifs": DEMO["ldifs"],
    "ldifs-3000": _row(1e-3, 3000.0, 74.0, 0.5, -1.0),
    "ft-mid-lr": _row(3e-4, 0.0, 74.5, -3.0, -6.0),
}
SWEEP["ldifs-10"]["train_log"]["train/ldifs"] = {"min": 1e-3, "median": 2e-3, "max": 4e-3}


def test_sweep_table_exact_with_forgetting_ratios():
    assert demo_text.sweep_table(SWEEP, DEMO) == (
        "| run | task acc | mean dLP | mean dZS | LP forgetting / FT's | ZS forgetting / FT's |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        "| FT (lr 1e-3) | 76.62 | -8.0 | -20.0 | 1.00 | 1.00 |\n"
        "| LDIFS (lr 1e-3, lambda 10) | 76.90 | -4.0 | -10.0 | 0.50 | 0.50 |\n"
        "| LDIFS (lr 1e-3, lambda 100) | 76.40 | -2.4 | -5.0 | 0.30 | 0.25 |\n"
        "| **LDIFS (lr 1e-3, lambda 300) (demo)** | 75.74 | -0.8 | -2.0 | 0.10 | 0.10 |\n"
        "| LDIFS (lr 1e-3, lambda 3000) | 74.00 | +0.5 | -1.0 | 0.00 | 0.05 |\n"
        "| FT (lr 3e-4) | 74.50 | -3.0 | -6.0 | 0.38 | 0.30 |"
    )


def test_sweep_findings_apply_the_rules_to_the_rows():
    # 15% bar: lambda 10 (0.50) and 100 (0.30) fail, 300 passes; 3000 passes the ratios but is
    # 2.62 points below FT. One-third bar: 100 is the first to pass.
    assert demo_text.smallest_lambda(SWEEP, 0.15, 1.0) == 300.0
    assert demo_text.smallest_lambda(SWEEP, 1 / 3, 1.0) == 100.0
    assert demo_text.smallest_lambda(SWEEP, 0.15, 3.0) == 300.0
    assert demo_text.smallest_lambda(SWEEP, 0.01, 3.0) is None
    text = demo_text.sweep_findings(SWEEP, DEMO)
    assert "within 1 point of FT's: lambda = 300; at most one third of FT's: lambda = 100." in text
    assert "Its runs FT (lr 1e-3), LDIFS (lr 1e-3, lambda 300) repeat the demo's and give" in text
    # 74.5 / -3 / -6 is beaten on all three by lambda 100 and 300; lambda 10 forgets more LP.
    assert "FT (lr 3e-4) is dominated by LDIFS at lambda 100, 300 (" in text
    changed = {**SWEEP, "ft": {**SWEEP["ft"], "task_acc": 75.0}}
    assert "differ from the demo table's by up to 1.6 points" in demo_text.sweep_findings(
        changed, DEMO
    )


def test_lambda_scale_uses_the_smallest_lambdas_logged_terms():
    assert demo_text.lambda_scale(SWEEP) == (
        "In the sweep's lambda = 10 run the per-batch LDIFS distance (`train/ldifs`) had a median "
        "of 2.0e-03 (from 1.0e-03 to 4.0e-03), so the term lambda x distance was about 0.02, next "
        "to a median cross-entropy (`train/ce`) of 0.45."
    )


# --- Model card and benchmarks -----------------------------------------------------------------


def test_card_tables_exact():
    assert card_text.card_accuracy_table(CARD) == (
        "| domain | classes | test images | zero-shot | linear probe |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| digits | 10 | 400 | 64.50 | 65.00 |\n"
        "| textures | 8 | 800 | 73.12 | 73.38 |"
    )
    assert card_text.demo_domains_table(CARD).splitlines()[2:] == [
        "| `digits` | 10 | 2600 / 400 | 64.5 / 65.0 |",
        "| `textures` | 8 | 2400 / 800 | 73.1 / 73.4 |",
    ]
    assert card_text.card_file_line(CARD) == (
        f"`demo-clip.pt` is 3,542,873 bytes (3.4 MiB), sha256 `{'ab' * 32}` (also in "
        "`SHA256SUMS`, checked on every load)."
    )


def _probe_result(n, ours, sklearn, ours_one, sklearn_one):
    return {
        "n": n,
        "dim": 64,
        "num_classes": 5,
        "ours_s": min(ours),
        "sklearn_s": min(sklearn_one),
        "speedup": min(sklearn_one) / min(ours),
        "ours_acc": 0.9085,
        "sklearn_acc": 0.909,
        "ours_s_all_by_thread_cap": {"default": ours, "1": ours_one},
        "sklearn_s_all_by_thread_cap": {"default": sklearn, "1": sklearn_one},
    }


def test_probe_benchmark_exact():
    report = {
        "settings": {"repeat": 2},
        "environment": {
            "python": "3.11.7",
            "torch": "2.14.1",
            "torch_default_threads": 2,
            "threads_cap": None,
            "machine": "x86_64",
        },
        "results": [_probe_result(10000, [0.5, 0.25], [9.0, 8.0], [1.0, 0.8], [6.0, 7.0])],
    }
    # speedup 6.0 / 0.25 = 24.0; one thread each: 6.0 / 0.8 = 7.5.
    assert benchmark_text.probe_benchmark(report) == (
        "Recorded on x86_64 (2 default torch threads, torch 2.14.1, Python 3.11.7), best of 2 per "
        "side, each side with its faster threading setting (default pools or one thread):\n\n"
        "| features | ours | scikit-learn | ratio | test acc ours / sklearn |\n"
        "| --- | ---: | ---: | ---: | --- |\n"
        "| 10,000 x 64, 5 classes | 0.25 s | 6.00 s | 24.0x | 90.85 / 90.90 |\n\n"
        "With both sides capped to one thread the ratios are 7.5x."
    )


def test_cache_benchmark_exact():
    report = {
        "model": "tiny",
        "suite": ["shapes", "digits"],
        "runs": [{"extractions": 4, "seconds": 2.0}, {"extractions": 0, "seconds": 0.5}],
    }
    assert benchmark_text.cache_benchmark(report) == (
        "A second run of the same suite (`shapes`, `digits`) with the same pre-trained model "
        "(`tiny`) performs **0** pre-trained feature extractions; the first performs 4 (2 per "
        "dataset: train and test). The second baseline measurement takes 0.25x the first's time "
        "(0.50 s vs 2.00 s), the rest being the probe."
    )


# --- The command line --------------------------------------------------------------------------


def _copy_repo_docs(root: Path) -> None:
    paths = {region.path for region in render.REGIONS}
    paths |= {source for region in render.REGIONS for source in region.sources}
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, root / path)


def test_check_names_the_stale_region_and_render_fixes_it(tmp_path, capsys):
    _copy_repo_docs(tmp_path)
    assert render.main(["--check", "--root", str(tmp_path)]) == 0
    card = json.loads((tmp_path / render.CARD).read_text())
    card["accuracy"]["digits"]["zs_acc"] += 1.0
    (tmp_path / render.CARD).write_text(json.dumps(card))
    capsys.readouterr()
    assert render.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale: README.md demo-domains (from ldifs_lightning/pretrained/card.json)" in err
    assert "stale: ldifs_lightning/pretrained/MODEL_CARD.md card-accuracy" in err
    assert "demo-table" not in err
    assert render.main(["--root", str(tmp_path)]) == 0
    assert render.main(["--check", "--root", str(tmp_path)]) == 0
    expected = f"{card['accuracy']['digits']['zs_acc']:.2f}"
    assert f"| digits | 10 | 400 | {expected} |" in (tmp_path / render.MODEL_CARD).read_text()


def test_missing_json_fails_in_one_line_and_writes_nothing(tmp_path, capsys):
    _copy_repo_docs(tmp_path)
    card = json.loads((tmp_path / render.CARD).read_text())
    card["accuracy"]["digits"]["zs_acc"] += 1.0  # would change MODEL_CARD.md and README.md
    (tmp_path / render.CARD).write_text(json.dumps(card))
    (tmp_path / render.SWEEP).unlink()
    before = {p: (tmp_path / p).read_text() for p in (render.README, render.MODEL_CARD)}
    assert render.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "docs/results/lambda_sweep.json is missing" in err
    assert "--sweep" in err
    assert {p: (tmp_path / p).read_text() for p in before} == before


def test_json_without_a_needed_field_names_region_and_source(tmp_path, capsys):
    _copy_repo_docs(tmp_path)
    card = json.loads((tmp_path / render.CARD).read_text())
    del card["domains"]
    (tmp_path / render.CARD).write_text(json.dumps(card))
    assert render.main(["--check", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "region 'demo-domains': cannot render from ldifs_lightning/pretrained/card.json" in err
    assert "KeyError: 'domains'" in err and err.count("\n") == 1


def test_build_refuses_the_shipped_file_as_new_weights(capsys):
    with pytest.raises(SystemExit):
        card_build.main(["--weights", str(DEMO_WEIGHTS)])
    assert "is the shipped file itself; to re-measure it use --card" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        card_build.main(["--weights", "no/such/demo-clip.pt"])
    assert "--weights no/such/demo-clip.pt is not a file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        card_build.main(["--weights", str(DEMO_WEIGHTS), "--card"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_card_records_the_full_split_sizes():
    assert card_build.domain_sizes(["shapes"]) == {
        "shapes": {"classes": 8, "train_images": 2400, "test_images": 800}
    }


def _continual_summary() -> dict:
    def run(last, forgetting, delta_lp, seconds):
        metrics = {
            "last": last,
            "avg": 70.0,
            "mean_forgetting": forgetting,
            "bwt": -forgetting,
            "transfer": 60.0,
            "final_delta_lp": delta_lp,
            "final_delta_zs": -1.0,
        }
        matrix = [[80.0, 50.0], [70.0, 90.0]]
        return {"metrics": metrics, "matrix": matrix, "seconds": seconds}

    return {
        "tasks": ["digits", "fashion"], "suite": ["shapes"], "epochs": 3, "cpus": 2,
        "threads": 1, "torch": "2.x",
        "runs": {"Sequential FT": run(60.0, 20.0, -9.0, 40.0),
                 "LDIFS lambda=300": run(70.0, 2.0, -1.5, 55.0),
                 "LwF weight=1": run(72.0, 5.0, -3.0, 50.0)},
    }  # fmt: skip


def test_continual_texts_exact():
    from ldifs_lightning.reporting import continual_text

    summary = _continual_summary()
    assert continual_text.setting(summary) == (
        "Sequence digits -> fashion, 3 epochs per stage, foreign suite shapes, seed 0, the shipped "
        "tiny CLIP; 3 runs of `configs/continual/demo.yaml`, each 40-55 s on 2 CPU cores with 1 "
        "torch thread (torch 2.x)."
    )
    assert continual_text.comparison_table(summary).splitlines()[3] == (
        "| LDIFS lambda=300 | 70.0 | 70.0 | 2.0 | -2.0 | 60.0 | -1.5 | -1.0 |"
    )
    assert continual_text.findings(summary).splitlines()[:3] == [
        "- Last (final accuracy over all tasks): best LwF weight=1 (72.0); the best LDIFS "
        "run, LDIFS lambda=300, is 2nd of 3 (70.0).",
        "- Avg (accuracy on the tasks seen so far, averaged over stages): best Sequential FT "
        "(70.0; tied with LDIFS lambda=300, LwF weight=1).",
        "- mean forgetting of the earlier tasks: best LDIFS lambda=300 (2.0).",
    ]
    assert continual_text.matrices(summary).splitlines()[:3] == [
        "| Sequential FT | digits | fashion |",
        "| --- | ---: | ---: |",
        "| after digits | 80.0 | 50.0 |",
    ]


def test_compare_texts_exact():
    from ldifs_lightning.reporting import compare_text

    def selected(value, acc, val, dlp, dzs):
        return {"value": value, "task_acc": [acc, 1.0], "val_acc": [val, 1.0],
                "mean_delta_lp": [dlp, 0.5], "mean_delta_zs": [dzs, 0.5]}  # fmt: skip

    results = {
        "setting": {"methods": ["zs", "ft", "ldifs"], "tasks": ["shapes", "textures"], "seeds": 3,
                    "knobs": {"ft": {"knob": "lr", "values": [0.0003, 0.001]},
                              "ldifs": {"knob": "lambda", "values": [30.0, 300.0]}},
                    "seconds": 1500.0, "workers": 2, "threads": 1, "cpus": 2, "torch": "2.x"},
        "summary": {
            "selected": {"zs": selected(None, 70.0, 70.0, 0.0, 0.0),
                         "ft": {**selected(0.001, 80.0, 80.0, -9.0, -20.0),
                                "mean_delta_lp_ece": [2.0, 0.5]},
                         "ldifs": selected(300.0, 78.5, 78.0, -1.25, -3.0)},
            "matched_accuracy": 79.0,
            "matched": {"ft": {"mean_delta_lp": -7.0, "mean_delta_zs": None},
                        "ldifs": {"mean_delta_lp": -2.0, "mean_delta_zs": -4.0}},
        },
    }  # fmt: skip
    assert compare_text.setting(results) == (
        "3 methods on 2 tasks (shapes, textures; each time the other three domains are the "
        "forgetting suite) with 3 seeds; knobs: FT lr in 0.0003, 0.001; LDIFS lambda in 30, 300. "
        "The whole grid took 25 minutes with 2 worker processes of 1 torch thread on 2 CPU cores "
        "(torch 2.x)."
    )
    assert compare_text.comparison_table(results).splitlines()[2:] == [
        "| ZS | - | 70.0 ± 1.0 | +0.0 ± 0.5 | +0.0 ± 0.5 | - | - | - | - |",
        "| FT | lr = 0.001 | 80.0 ± 1.0 | -9.0 ± 0.5 | -20.0 ± 0.5 | +2.0 ± 0.5 | - | -7.0 | - |",
        "| LDIFS | lambda = 300 | 78.5 ± 1.0 | -1.2 ± 0.5 | -3.0 ± 0.5 | - | - | -2.0 | -4.0 |",
    ]
    assert compare_text.findings(results).splitlines() == [
        "- Task accuracy at each method's validation-selected setting, highest first: FT 80.0, "
        "LDIFS 78.5, ZS 70.0.",
        "- At the same settings, mean delta LP, least forgetting first: LDIFS -1.2, FT -9.0 (ZS "
        "and LP leave the encoder unchanged: 0).",
        "- At the same settings, mean delta ZS, least forgetting first: LDIFS -3.0, FT -20.0 (ZS "
        "and LP leave the encoder unchanged: 0).",
        "- At matched task accuracy 79.0, mean delta LP, least forgetting first: LDIFS -2.0, "
        "FT -7.0.",
        "- At matched task accuracy 79.0, mean delta ZS, least forgetting first: LDIFS -4.0.",
    ]
