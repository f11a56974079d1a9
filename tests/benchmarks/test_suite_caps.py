"""The Markdown renderers of benchmarks/suite_caps.py's report, on hand-made reports."""

from ldifs_lightning.reporting.caps_text import caps_table, duration, monitoring_cost_table


def _cap_row(train, test, used, pre_lp, ft_lp, deltas_lp, pre_zs, ft_zs, deltas_zs) -> dict:
    return {
        "max_train_samples": train,
        "max_test_samples": test,
        "train_used": used[0],
        "test_used": used[1],
        "mean": {
            "pretrained_lp": pre_lp,
            "finetuned_lp": ft_lp,
            "delta_lp": sum(deltas_lp) / len(deltas_lp),
            "pretrained_zs": pre_zs,
            "finetuned_zs": ft_zs,
            "delta_zs": sum(deltas_zs) / len(deltas_zs),
        },
        # population standard deviations of the two seeds' deltas, by hand: |a - b| / 2
        "std": {
            "delta_lp": abs(deltas_lp[0] - deltas_lp[1]) / 2,
            "delta_zs": abs(deltas_zs[0] - deltas_zs[1]) / 2,
        },
    }


REPORT = {
    "environment": {"torch": "2.14.1", "torch_threads": 1},
    "seconds": 151.4,
    "caps": {
        "model": "ldifs-tiny-vit",
        "pretrained": "demo",
        "seeds": [0, 1],
        "finetune": {"config": "configs/demo/ft.yaml", "task": "textures", "epochs": 3},
        "domains": {
            "digits": {
                "caps": [
                    _cap_row(2000, 1000, (2000, 400), 65.5, 60.25, [-5.0, -5.5], 64.5, 53.5,
                             [-11.0, -11.0]),
                    _cap_row(None, None, (2600, 400), 65.0, 62.5, [-2.0, -3.0], 64.5, 53.5,
                             [-11.0, -11.0]),
                ]
            },
            "shapes": {
                "caps": [
                    _cap_row(100, 100, (100, 100), 94.0, 80.0, [-14.0, -10.0], 89.0, 75.0,
                             [0.02, -0.02]),
                ]
            },
        },
    },
    "monitoring_cost": {
        "note": "Estimates from per-image CPU timings.",
        "estimate_model": "ViT-B-32",
        "forward_s_per_image": {"ldifs-tiny-vit": 0.0002, "ViT-B-32": 0.0625},
        "forward_batch_size": {"ldifs-tiny-vit": 256, "ViT-B-32": 16},
        "configs": [
            {
                "config": "configs/data/svhn.yaml",
                "task": "svhn",
                "train_images": 65931,
                "val_images": 7326,
                "suite": ["cars", "imagenet"],
                "monitor_images": 6000,
                "epoch_s_ldifs": 16940.0,
                "monitor_s": 395.0,
                "monitor_share_of_ldifs_epoch": 395.0 / 16940.0,
                "final_full_images": 1347352,
                "final_full_forward_s": 84209.5,
            },
            {
                "config": "configs/data/dtd.yaml",
                "task": "dtd",
                "train_images": 1692,
                "val_images": 188,
                "suite": ["cifar10"],
                "monitor_images": 3000,
                "epoch_s_ldifs": 100.0,
                "monitor_s": 119.5,
                "monitor_share_of_ldifs_epoch": 1.195,
                "final_full_images": 60000,
                "final_full_forward_s": 3750.0,
            },
        ],
    },
}  # fmt: skip


def test_caps_table_renders_a_hand_made_report_exactly():
    expected = "\n".join(
        [
            "Recorded with torch 2.14.1, 1 torch thread (151 s in all): `ldifs-tiny-vit` "
            "(`demo`) and its image encoder after 3 epochs of `configs/demo/ft.yaml`'s "
            "fine-tuning on `textures`. Accuracies in %, means over 2 seeds (the seed draws the "
            "capped subsets and the probe's held-out split); each delta is the mean ± the "
            "standard deviation over the seeds.",
            "",
            "| domain | cap train / test | images used | A_LP pre | A_LP FT | dLP | A_ZS pre | "
            "A_ZS FT | dZS |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| digits | 2,000 / 1,000 | 2,000 / 400 | 65.5 | 60.2 | -5.2 ± 0.2 | 64.5 | 53.5 "
            "| -11.0 ± 0.0 |",
            "| digits | all / all | 2,600 / 400 | 65.0 | 62.5 | -2.5 ± 0.5 | 64.5 | 53.5 "
            "| -11.0 ± 0.0 |",
            "| shapes | 100 / 100 | 100 / 100 | 94.0 | 80.0 | -12.0 ± 2.0 | 89.0 | 75.0 "
            "| 0.0 ± 0.0 |",
        ]
    )
    assert caps_table(REPORT) == expected


def test_monitoring_cost_table_renders_a_hand_made_report_exactly():
    expected = "\n".join(
        [
            "Estimates from per-image CPU timings. Forward per image on this CPU: "
            "`ldifs-tiny-vit` 0.20 ms (batch 256), `ViT-B-32` 62.50 ms (batch 16). Rows use "
            "`ViT-B-32`.",
            "",
            "| config | task | train + val images | suite datasets | monitored images / epoch "
            "| LDIFS epoch (est.) | monitoring / epoch (est.) | monitoring / LDIFS epoch "
            "| whole-split images at the end | their forwards (est.) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            # 16940 s = 4.7 h; 395 s = 6.6 min; 395 / 16940 = 0.023; 84209.5 s = 23.4 h
            "| configs/data/svhn.yaml | svhn | 65,931 + 7,326 | 2 | 6,000 | 4.7 h | 6.6 min "
            "| 0.02x | 1,347,352 | 23.4 h |",
            # 100 s stays in seconds; 119.5 s rounds to 120 s; 3750 s = 62.5 min
            "| configs/data/dtd.yaml | dtd | 1,692 + 188 | 1 | 3,000 | 100 s | 120 s | 1.20x "
            "| 60,000 | 62.5 min |",
        ]
    )
    assert monitoring_cost_table(REPORT) == expected


def test_duration_switches_units_at_two_minutes_and_two_hours():
    assert [duration(s) for s in (0.4, 119.0, 120.0, 7199.0, 7200.0)] == [
        "0 s",
        "119 s",
        "2.0 min",
        "120.0 min",
        "2.0 h",
    ]
