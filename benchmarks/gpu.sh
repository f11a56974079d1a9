#!/usr/bin/env bash
# GPU benchmarks, one CUDA machine, under 5 minutes on one H200; nothing is downloaded (random
# weights, synthetic data, the shipped demo model). Writes its JSON reports into OUT_DIR:
#
#   step_cost.json      FT vs LDIFS vs L2SP on ViT-B/32 and ViT-L/14, batch 128, bf16-mixed:
#                       images/second and torch.cuda.max_memory_allocated (benchmarks/step_cost.py)
#   linear_probe.json   the probe on the GPU vs scikit-learn on the CPU (linear_probe_vs_sklearn.py)
#   ddp_parity.json     with two or more GPUs: the demo LDIFS run for 20 steps on 1 GPU (batch 64)
#                       and with DDP on 2 GPUs (batch 32 each), final encoder weights compared
#
#   bash benchmarks/gpu.sh OUT_DIR    (Python: $PYTHON, else .venv/bin/python, else python3)
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "gpu.sh: error: give exactly one argument, the output folder (bash benchmarks/gpu.sh OUT_DIR)" >&2
    exit 2
fi
out=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
if [[ -z "${PYTHON:-}" && ! -x "$python" ]]; then
    python=python3  # no .venv here: the interpreter on PATH
fi
if ! "$python" -c 'import ldifs_lightning' 2>/dev/null; then
    echo "gpu.sh: error: $python cannot import ldifs_lightning; run make test once, pip install -e ., or set PYTHON=..." >&2
    exit 2
fi
export HF_HUB_OFFLINE=1

gpus=$("$python" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [[ "$gpus" -lt 1 ]]; then
    echo "gpu.sh: error: no CUDA device is visible to torch (torch.cuda.is_available() is False); run it on a GPU machine" >&2
    exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)  # the commands below run from the repository root
cd "$root"
echo "gpu.sh: $gpus CUDA device(s); reports go to $out"

echo "== training step cost (bf16-mixed, batch 128)"
"$python" benchmarks/step_cost.py --device cuda --precision bf16-mixed \
    --models ViT-B-32 ViT-L-14 --batch-sizes 128 --methods FT LDIFS L2SP --repeats 3 --steps 5 \
    --no-forgetting --out "$out/step_cost.json"

echo "== linear probe vs scikit-learn"
"$python" benchmarks/linear_probe_vs_sklearn.py --device cuda --repeat 2 \
    --out "$out/linear_probe.json"

echo "== DDP parity"
if [[ "$gpus" -lt 2 ]]; then
    echo "skipped: DDP parity needs 2 CUDA devices, found $gpus"
    exit 0
fi
run_demo_steps() {  # $1: devices, $2: per-device batch, $3: run folder
    "$python" -m ldifs_lightning fit \
        --model ldifs_lightning.LDIFSModule --model.model_name ldifs-tiny-vit \
        --model.pretrained demo --model.ldifs_weight 300 --model.lr 1e-3 --model.warmup_steps 10 \
        --data ldifs_lightning.data.FineTuneDataModule --data.dataset textures \
        --data.image_size 32 --data.batch_size "$2" \
        --trainer.accelerator gpu --trainer.devices "$1" --trainer.strategy ddp \
        --trainer.precision 32-true --trainer.max_steps 20 --trainer.limit_val_batches 0 \
        --trainer.logger false --trainer.enable_progress_bar false \
        --trainer.default_root_dir "$3"
}
run_demo_steps 1 64 "$out/ddp-1gpu"
run_demo_steps 2 32 "$out/ddp-2gpu"
"$python" - "$out" <<'EOF'
# Parity: how far apart the two runs' encoders ended, relative to how far training moved them
# from the shipped demo weights. The same global batches give a ratio near rounding noise;
# different data or wrong gradient averaging give a ratio near 1.
import json
import sys
from pathlib import Path

import torch

from ldifs_lightning.models import create_clip

out = Path(sys.argv[1])
runs = {}
for name in ("ddp-1gpu", "ddp-2gpu"):
    (checkpoint,) = (out / name / "checkpoints").glob("*.ckpt")
    runs[name] = torch.load(checkpoint, map_location="cpu", weights_only=True)
one, two = (runs[name]["state_dict"] for name in ("ddp-1gpu", "ddp-2gpu"))
keys = [k for k in one if k.startswith("image_encoder.") and one[k].is_floating_point()]


start = {f"image_encoder.{k}": v for k, v in create_clip("ldifs-tiny-vit", "demo").visual.state_dict().items()}


def flat(state):
    return torch.cat([state[k].double().flatten() for k in keys])


diff = (flat(one) - flat(two)).norm().item()
moved = (flat(one) - flat(start)).norm().item()
report = {
    "steps": [runs[name]["global_step"] for name in runs],
    "global_batch": 64,
    "encoder_diff_norm": diff,
    "encoder_update_norm": moved,
    "diff_over_update": diff / moved,
    "max_abs_weight_diff": max((one[k] - two[k]).abs().max().item() for k in keys),
}
(out / "ddp_parity.json").write_text(json.dumps(report, indent=2) + "\n")
print(f"1 GPU vs 2-GPU DDP: |encoder difference| / |encoder update| = {diff / moved:.2e}")
EOF

