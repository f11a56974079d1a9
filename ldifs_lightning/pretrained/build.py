"""Ship a pre-trained demo CLIP: copy its weights here, checksum them, measure the model card.

    python -m ldifs_lightning.pretrained.build --weights runs/demo-pretrain/.../demo-clip.pt
    python -m ldifs_lightning.pretrained.build --card     # re-measure the shipped weights only
    python -m ldifs_lightning.pretrained.build            # print the numbers, write nothing

``--weights`` writes ``demo-clip.pt`` and ``SHA256SUMS`` in this folder; both it and ``--card``
then write ``card.json`` (per demo domain: classes, split sizes, zero-shot and linear-probe
accuracy on the full test split, the numbers the tests check) and re-render the tables generated
from it (``MODEL_CARD.md``'s and, in a checkout, the README's) with
``ldifs_lightning.reporting.render``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ldifs_lightning.pretrained import DEMO_MODEL_NAME, DEMO_TAG, DEMO_WEIGHTS, HERE, sha256_of

if TYPE_CHECKING:
    from ldifs_lightning.evaluation.forgetting import Metric

CARD = HERE / "card.json"
CARD_DOMAINS: tuple[str, ...] = ("digits", "fashion", "shapes", "textures")


def measure_card(
    model_name: str = DEMO_MODEL_NAME,
    pretrained: str = DEMO_TAG,
    domains: Sequence[str] = CARD_DOMAINS,
    metrics: Sequence[Metric] = ("zero_shot", "linear_probe"),
) -> dict[str, dict[str, float]]:
    """``{domain: {"zs_acc": %, "lp_acc": %}}`` on each domain's full test split (probe: full
    train split, seed 0), with the image tower in fp32 on the CPU."""
    from ldifs_lightning.evaluation.forgetting import encoder_accuracies
    from ldifs_lightning.evaluation.suite import registry_suite
    from ldifs_lightning.models import (
        create_clip,
        get_tokenizer,
        image_encoder_of,
        logit_scale_of,
        zero_shot_class_embeddings,
    )

    clip = create_clip(model_name, pretrained).eval()
    suite = registry_suite(list(domains), "data", 32, None, None, seed=0)
    tokenizer = get_tokenizer(model_name)
    embeddings = {
        d.name: zero_shot_class_embeddings(clip, tokenizer, d.classnames, d.templates)
        for d in suite
    }
    with torch.no_grad():
        return encoder_accuracies(
            image_encoder_of(clip),
            suite,
            class_embeddings=embeddings,
            metrics=list(metrics),
            zero_shot_scale=float(logit_scale_of(clip).detach().exp()),
        )


def domain_sizes(domains: Sequence[str] = CARD_DOMAINS) -> dict[str, dict[str, int]]:
    """``{domain: {"classes", "train_images", "test_images"}}`` of the full splits."""
    from ldifs_lightning.data.sized import dataset_length
    from ldifs_lightning.evaluation.suite import registry_suite

    return {
        d.name: {
            "classes": len(d.classnames),
            "train_images": dataset_length(d.train),
            "test_images": dataset_length(d.test),
        }
        for d in registry_suite(list(domains), "data", 32, None, None, seed=0)
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--weights", type=Path, help="demo-clip.pt written by the pre-training")
    which.add_argument(
        "--card",
        action="store_true",
        help="re-measure the shipped weights and rewrite card.json (weights, SHA256SUMS untouched)",
    )
    args = parser.parse_args(argv)
    if args.weights is not None:
        if not args.weights.is_file():
            parser.error(
                f"--weights {args.weights} is not a file; give the demo-clip.pt a fit wrote"
            )
        if args.weights.resolve() == DEMO_WEIGHTS.resolve():
            parser.error(
                f"--weights {args.weights} is the shipped file itself; to re-measure it use --card"
            )
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
        "domains": domain_sizes(),
        "accuracy": {
            domain: {key: round(value, 2) for key, value in row.items()}
            for domain, row in accuracies.items()
        },
    }
    print(json.dumps(card, indent=2))
    if args.weights is not None or args.card:
        from ldifs_lightning.reporting.render import CARD as CARD_SOURCE
        from ldifs_lightning.reporting.render import COMMAND, REGIONS, RenderError, write_regions

        CARD.write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote {CARD}")
        try:
            changed = write_regions([r for r in REGIONS if CARD_SOURCE in r.sources])
        except RenderError as error:
            raise SystemExit(
                f"card.json is written, its tables are not: {error}; fix it, then run {COMMAND}"
            ) from None
        for path in changed:
            print(f"updated {path}")


if __name__ == "__main__":
    main()
