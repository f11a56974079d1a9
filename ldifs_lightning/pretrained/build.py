"""Ship a pre-trained demo CLIP: copy its weights here, checksum them, measure the model card.

    python -m ldifs_lightning.pretrained.build --weights runs/demo-pretrain/.../demo-clip.pt

Writes ``demo-clip.pt``, ``SHA256SUMS`` and ``card.json`` (zero-shot and linear-probe accuracy on
each demo domain's full test split, the numbers ``MODEL_CARD.md`` quotes and the tests check) in
this folder. Without ``--weights`` it only re-measures the shipped file and prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from ldifs_lightning.pretrained import DEMO_MODEL_NAME, DEMO_TAG, DEMO_WEIGHTS, HERE, sha256_of

CARD = HERE / "card.json"
CARD_DOMAINS: tuple[str, ...] = ("digits", "fashion", "shapes", "textures")


def measure_card(
    model_name: str = DEMO_MODEL_NAME,
    pretrained: str = DEMO_TAG,
    domains: Sequence[str] = CARD_DOMAINS,
    metrics: Sequence[str] = ("zero_shot", "linear_probe"),
) -> dict[str, dict[str, float]]:
    """``{domain: {"zs_acc": %, "lp_acc": %}}`` on each domain's full test split (probe: full
    train split, seed 0), with the image tower in fp32 on the CPU."""
    from ldifs_lightning.evaluation.forgetting import encoder_accuracies
    from ldifs_lightning.evaluation.suite import registry_suite
    from ldifs_lightning.models import create_clip, get_tokenizer, zero_shot_class_embeddings

    clip = create_clip(model_name, pretrained).eval()
    suite = registry_suite(list(domains), "data", 32, None, None, seed=0)
    tokenizer = get_tokenizer(model_name)
    embeddings = {
        d.name: zero_shot_class_embeddings(clip, tokenizer, d.classnames, d.templates)
        for d in suite
    }
    with torch.no_grad():
        return encoder_accuracies(
            clip.visual, suite, class_embeddings=embeddings, metrics=list(metrics)
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="demo-clip.pt written by the pre-training")
    args = parser.parse_args(argv)
    if args.weights is not None:
        shutil.copyfile(args.weights, DEMO_WEIGHTS)
        (HERE / "SHA256SUMS").write_text(f"{sha256_of(DEMO_WEIGHTS)}  {DEMO_WEIGHTS.name}\n")
    accuracies = measure_card()
    card = {
        "model_name": DEMO_MODEL_NAME,
        "pretrained": DEMO_TAG,
        "weights": DEMO_WEIGHTS.name,
        "sha256": sha256_of(DEMO_WEIGHTS),
        "size_bytes": DEMO_WEIGHTS.stat().st_size,
        "recipe": "ldifs fit --config configs/demo/pretrain.yaml (seed_everything: 0)",
        "evaluation": "full test split of each domain; probe fitted on the full train split",
        "accuracy": {
            domain: {key: round(value, 2) for key, value in row.items()}
            for domain, row in accuracies.items()
        },
    }
    if args.weights is not None:
        CARD.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
