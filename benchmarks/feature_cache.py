"""Show that a second run of the same forgetting suite extracts no pre-trained features.

Two fresh ConceptForgettingCallbacks (as two separate training runs would create) measure the same
suite with the same pre-trained model and share one cache directory. The script counts calls to
feature extraction and times both baseline measurements in the same process.

    python benchmarks/feature_cache.py                 # tiny demo model on `shapes`, offline
    python benchmarks/feature_cache.py --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.callbacks import ConceptForgettingCallback
from ldifs_lightning.evaluation import forgetting
from ldifs_lightning.models import create_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="ldifs-tiny-vit")
    parser.add_argument("--suite", nargs="+", default=["shapes"])
    parser.add_argument("--max-train-samples", type=int, default=2000)
    parser.add_argument("--max-test-samples", type=int, default=800)
    parser.add_argument("--out", default="benchmarks/results/feature_cache.json")
    args = parser.parse_args()

    calls = []
    real = forgetting.extract_features

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    forgetting.extract_features = counting
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "pretrained.pt"
        torch.manual_seed(0)
        torch.save(create_clip(args.model_name).state_dict(), weights)
        runs = []
        for run in (1, 2):
            callback = ConceptForgettingCallback(
                args.suite,
                metrics=["linear_probe"],
                max_train_samples=args.max_train_samples,
                max_test_samples=args.max_test_samples,
                cache_dir=str(Path(scratch) / "cache"),
                model_name=args.model_name,
                pretrained=str(weights),
            )
            before = len(calls)
            start = time.perf_counter()
            reference, _ = callback._reference(None, torch.device("cpu"))
            callback._accuracies(reference, torch.device("cpu"), None, cached=True)
            seconds = time.perf_counter() - start
            runs.append({"run": run, "extractions": len(calls) - before, "seconds": seconds})
    result = {
        "model": args.model_name,
        "suite": args.suite,
        "runs": runs,
        "speedup": runs[0]["seconds"] / runs[1]["seconds"],
    }
    for run in runs:
        print(f"run {run['run']}: {run['extractions']} feature extractions, {run['seconds']:.2f} s")
    print(f"second run / first run time ratio: {1 / result['speedup']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
