"""Measure what LDIFS adds to a fine-tuning step: step time and peak memory, as ratios to FT.

One process builds two ``FineTuneModule``s from the same random weights, FT (no regulariser) and
LDIFS (an ``LDIFS`` regulariser, weight 10), and times one training step of each
(``training_step`` + backward + AdamW step) in interleaved rounds (the order alternates every
round), keeping the median of each side. It also times LDIFS's parts on their own, interleaved
the same way: the frozen copy's forward with its taps, the trainable forward with and without the
tap hooks, and ``ldifs_distance`` forward + backward on recorded taps.

Peak memory is measured at the CPU allocator: inside ``torch.profiler.profile(profile_memory=True)``
every allocation and free of the CPU allocator is recorded with its size and time. The peak of one
step is the bytes already live when it starts (parameters, buffers, optimizer state and the frozen
copy, enumerated by storage; gradients are set to None before the step, as Lightning does) plus the
maximum of the running sum of the step's allocation events. Unlike the process RSS, this is not
blurred by malloc's caching and sees every tensor, autograd's saved ones included.

    python benchmarks/ldifs_overhead.py                  # tiny ViT b128, ViT-B/32 b8 and b32
    python benchmarks/ldifs_overhead.py --quick          # tiny ViT only, 3 rounds
    python benchmarks/ldifs_overhead.py --cases tiny-vit-128 --rounds 9 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from ldifs_lightning.atomic import atomic_write_text
from ldifs_lightning.models import FeatureTaps
from ldifs_lightning.modules import FineTuneModule
from ldifs_lightning.regularizers import LDIFS, ldifs_distance
from ldifs_lightning.regularizers import ldifs as ldifs_regularizer
from ldifs_lightning.regularizers.ldifs import attention_fast_path_disabled

# name: (model_name, batch size, image side, step-time target)
CASES: dict[str, tuple[str, int, int, float]] = {
    "tiny-vit-128": ("ldifs-tiny-vit", 128, 32, 1.45),
    "vit-b-32-8": ("ViT-B-32", 8, 224, 1.35),
    "vit-b-32-32": ("ViT-B-32", 32, 224, 1.35),
}
MEMORY_SLACK = 0.03
CLASSNAMES = [f"class {i}" for i in range(10)]


def autograd_distance(
    features: list[torch.Tensor],
    reference: list[torch.Tensor],
    normalize: str,
    free_reference: bool = False,  # accepted as LDIFS passes it; nothing is reused here
) -> torch.Tensor:
    """The LDIFS distance as plain autograd ops (``F.normalize``, difference, squared mean): the
    formulation ``ldifs_distance`` had before its backward was written out, timed as "before"."""
    per_tap = []
    for feature, ref in zip(features, reference, strict=True):
        feature, ref = feature.float(), ref.detach().float()
        if normalize != "none":
            dim = 1 if normalize == "token" else 2
            feature, ref = F.normalize(feature, dim=dim), F.normalize(ref, dim=dim)
        per_tap.append((feature - ref).pow(2).mean(dim=(1, 2)))
    return torch.stack(per_tap).mean(dim=0).mean()


def _module(model_name: str, ldifs_weight: float, normalize: str) -> FineTuneModule:
    """FT (``ldifs_weight=0``: no regulariser) or FT + LDIFS, from the same random weights."""
    torch.manual_seed(0)
    terms = [LDIFS(ldifs_weight, normalize)] if ldifs_weight > 0 else []
    module = FineTuneModule(
        CLASSNAMES,
        model_name=model_name,
        pretrained=None,
        regularizers=terms,
        head_init="random",
    )
    return module.train()


class _Side:
    """One module with its optimizer, stepping on a fixed batch."""

    def __init__(
        self,
        module: FineTuneModule,
        images: torch.Tensor,
        labels: torch.Tensor,
        distance: Callable[..., torch.Tensor] = ldifs_distance,
    ) -> None:
        self.module = module
        self.batch = (images, labels)
        self.distance = distance
        self.optimizer = torch.optim.AdamW(module.trainable_parameters(), lr=1e-5, weight_decay=0.1)

    def step(self) -> None:
        # The LDIFS regulariser calls ldifs_distance through its module global: swap it for this
        # side.
        ldifs_regularizer.ldifs_distance = self.distance
        try:
            self.optimizer.zero_grad(set_to_none=True)
            with record_function("forward"):
                loss = self.module.training_step(self.batch, 0)
            with record_function("backward"):
                loss.backward()
            with record_function("optimizer"):
                self.optimizer.step()
        finally:
            ldifs_regularizer.ldifs_distance = ldifs_distance

    def live_bytes(self) -> int:
        """Bytes of every distinct storage the module and optimizer hold between steps."""
        tensors = list(self.module.state_dict(keep_vars=True).values())
        for state in self.optimizer.state.values():
            tensors += [value for value in state.values() if isinstance(value, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())


def _peak(side: _Side) -> dict:
    """Peak bytes of one step: static bytes + the highest running total of its allocator events,
    and the phase (forward, backward, optimizer) where that total was reached."""
    side.optimizer.zero_grad(set_to_none=True)
    static = side.live_bytes()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        side.step()
    events = prof.profiler.kineto_results.events()
    phases = [e for e in events if e.name() in ("forward", "backward", "optimizer")]
    running = highest = 0
    at_ns = 0
    memory = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
    for event in memory:
        running += event.nbytes()
        if running > highest:
            highest, at_ns = running, event.start_ns()
    phase = next((p.name() for p in phases if p.start_ns() <= at_ns <= p.end_ns()), "between")
    return {"bytes": static + highest, "static_bytes": static, "phase": phase}


def _interleaved(functions: dict[str, Callable[[], None]], rounds: int, steps: int) -> dict:
    """Seconds per call of each function: ``steps`` calls per round, order rotated each round."""
    names = list(functions)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(steps):
                functions[name]()
            seconds[name].append((time.perf_counter() - start) / steps)
    return seconds


def _part_functions(side: _Side) -> dict[str, Callable[[], None]]:
    """LDIFS's parts, each run as the module runs it, on the same batch."""
    module, (images, _) = side.module, side.batch
    with FeatureTaps(module.image_encoder, module.tap_names) as taps:
        module.image_encoder(images)
    recorded = [f.detach().clone().requires_grad_(True) for f in taps.features()]
    torch.manual_seed(1)
    reference = [f.detach() + 0.01 * torch.randn_like(f) for f in recorded]
    (term,) = module.regularizers
    normalize = term.normalize

    def frozen_forward() -> None:
        with (
            torch.no_grad(),
            attention_fast_path_disabled(),
            FeatureTaps(module.reference_encoder, module.tap_names) as frozen,
        ):
            module.reference_encoder(images)
        frozen.features()

    def trainable_forward() -> None:
        module.image_encoder(images)

    def trainable_forward_with_taps() -> None:
        with FeatureTaps(module.image_encoder, module.tap_names) as trainable:
            module.image_encoder(images)
        trainable.features()

    def distance() -> None:
        ldifs_distance(recorded, reference, normalize).backward()

    def distance_autograd() -> None:
        autograd_distance(recorded, reference, normalize).backward()

    return {
        "frozen_forward": frozen_forward,
        "trainable_forward": trainable_forward,
        "trainable_forward_with_taps": trainable_forward_with_taps,
        "distance_forward_backward": distance,
        "distance_forward_backward_autograd": distance_autograd,
    }


def _op_profile(side: _Side, steps: int, top: int) -> list[dict]:
    """Self CPU time per step and self allocated bytes of the ``top`` costliest ops."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            side.step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {
            "op": row.key,
            "calls_per_step": row.count / steps,
            "self_ms_per_step": row.self_cpu_time_total / 1000 / steps,
            "self_alloc_mib_per_step": row.self_cpu_memory_usage / 2**20 / steps,
        }
        for row in rows[:top]
    ]


def run_case(name: str, args: argparse.Namespace) -> dict:
    model_name, batch, side_px, time_target = CASES[name]
    torch.manual_seed(0)
    images = torch.randn(batch, 3, side_px, side_px)
    labels = torch.randint(0, len(CLASSNAMES), (batch,))
    sides = {
        "ft": _Side(_module(model_name, 0.0, args.normalize), images, labels),
        "ldifs": _Side(_module(model_name, 10.0, args.normalize), images, labels),
        # Same module, plain-autograd distance: the "before" of the written-out backward.
        "ldifs_autograd": _Side(
            _module(model_name, 10.0, args.normalize), images, labels, autograd_distance
        ),
    }
    for side in sides.values():  # warm-up: optimizer state, allocator, thread pools
        side.step()
    start = time.perf_counter()
    sides["ft"].step()
    steps = args.steps or max(1, round(args.seconds_per_block / (time.perf_counter() - start)))

    step_s = _interleaved({key: side.step for key, side in sides.items()}, args.rounds, steps)
    part_s = _interleaved(_part_functions(sides["ldifs"]), args.rounds, steps)
    peaks = {key: _peak(side) for key, side in sides.items()}
    frozen_bytes = sum(
        t.untyped_storage().nbytes()
        for t in sides["ldifs"].module.reference_encoder.state_dict().values()
    )

    # One gradient per tap (in the tap's dtype), kept from the forward to the backward: exact
    # LDIFS's floor. The shapes are taken in eval mode (no batch statistics updated).
    encoder = sides["ldifs"].module.image_encoder.eval()
    with torch.no_grad(), FeatureTaps(encoder, sides["ldifs"].module.tap_names) as taps:
        encoder(images)
    encoder.train()
    gradient_bytes = sum(t.numel() * t.element_size() for t in taps.features())

    med = {key: statistics.median(values) for key, values in {**step_s, **part_s}.items()}
    ft_peak = peaks["ft"]["bytes"]
    memory_target = 1.0 + frozen_bytes / ft_peak + MEMORY_SLACK

    def time_ratio(key: str) -> float:
        return med[key] / med["ft"]

    def round_ratio(key: str) -> float:
        return statistics.median(a / b for a, b in zip(step_s[key], step_s["ft"], strict=True))

    result = {
        "model": model_name,
        "batch": batch,
        "image_size": side_px,
        "normalize": args.normalize,
        "steps_per_block": steps,
        "median_seconds": med,
        "seconds_per_round": {**step_s, **part_s},
        "time_ratio": time_ratio("ldifs"),
        "time_ratio_per_round_median": round_ratio("ldifs"),
        "time_ratio_autograd_distance": time_ratio("ldifs_autograd"),
        "time_ratio_autograd_distance_per_round_median": round_ratio("ldifs_autograd"),
        "time_target": time_target,
        "time_target_met": time_ratio("ldifs") <= time_target,
        "extra_seconds": {
            "total": med["ldifs"] - med["ft"],
            "frozen_forward": med["frozen_forward"],
            "hooks": med["trainable_forward_with_taps"] - med["trainable_forward"],
            "distance_forward_backward": med["distance_forward_backward"],
            "distance_forward_backward_autograd": med["distance_forward_backward_autograd"],
        },
        "peak": peaks,
        "frozen_weight_bytes": frozen_bytes,
        "extra_bytes_beyond_frozen_copy": {
            key: peaks[key]["bytes"] - ft_peak - frozen_bytes for key in ("ldifs", "ldifs_autograd")
        },
        "memory_ratio": peaks["ldifs"]["bytes"] / ft_peak,
        "memory_ratio_autograd_distance": peaks["ldifs_autograd"]["bytes"] / ft_peak,
        "memory_target": memory_target,
        "memory_target_met": peaks["ldifs"]["bytes"] / ft_peak <= memory_target,
        "tap_gradient_bytes": gradient_bytes,
        "memory_floor": memory_target + gradient_bytes / ft_peak,
        "memory_floor_met": peaks["ldifs"]["bytes"] / ft_peak
        <= memory_target + gradient_bytes / ft_peak,
    }
    if args.profile:
        result["profile"] = {key: _op_profile(sides[key], steps, 15) for key in ("ft", "ldifs")}
    return result


def _print_case(name: str, r: dict) -> None:
    ms = {key: value * 1e3 for key, value in r["median_seconds"].items()}
    x = {key: value * 1e3 for key, value in r["extra_seconds"].items()}
    print(
        f"{name}: FT {ms['ft']:.1f} ms, LDIFS {ms['ldifs']:.1f} ms, time ratio "
        f"{r['time_ratio']:.3f} (per-round median {r['time_ratio_per_round_median']:.3f}; target "
        f"<= {r['time_target']}: {'met' if r['time_target_met'] else 'NOT met'}); with the "
        f"autograd distance {r['time_ratio_autograd_distance']:.3f}"
    )
    print(
        f"  extra {x['total']:.1f} ms: frozen forward {x['frozen_forward']:.1f}, hooks "
        f"{x['hooks']:.2f}, distance fwd+bwd {x['distance_forward_backward']:.2f} (autograd "
        f"{x['distance_forward_backward_autograd']:.2f})"
    )
    mib = {key: peak["bytes"] / 2**20 for key, peak in r["peak"].items()}
    beyond = {key: value / 2**20 for key, value in r["extra_bytes_beyond_frozen_copy"].items()}
    print(
        f"  peak FT {mib['ft']:.1f} MiB ({r['peak']['ft']['phase']}), LDIFS {mib['ldifs']:.1f} "
        f"MiB ({r['peak']['ldifs']['phase']}), frozen weights "
        f"{r['frozen_weight_bytes'] / 2**20:.1f} MiB; beyond them {beyond['ldifs']:+.1f} MiB "
        f"(autograd distance {beyond['ldifs_autograd']:+.1f}); ratio {r['memory_ratio']:.3f} "
        f"(target <= {r['memory_target']:.3f}: {'met' if r['memory_target_met'] else 'NOT met'}; "
        f"floor with one gradient per tap, {r['tap_gradient_bytes'] / 2**20:.1f} MiB, <= "
        f"{r['memory_floor']:.3f}: {'met' if r['memory_floor_met'] else 'NOT met'})"
    )
    for side, rows in r.get("profile", {}).items():
        print(f"  top ops of a {side} step (self ms, calls, self alloc MiB):")
        for row in rows:
            print(
                f"    {row['op'][:48]:<48} {row['self_ms_per_step']:8.2f} "
                f"{row['calls_per_step']:6.0f} {row['self_alloc_mib_per_step']:8.1f}"
            )


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), metavar="CASE")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median kept)")
    parser.add_argument(
        "--steps", type=int, default=0, help="calls per side per round (0: --seconds-per-block)"
    )
    parser.add_argument(
        "--seconds-per-block", type=float, default=0.5, help="aim of one side's block of calls"
    )
    parser.add_argument("--normalize", default="token", choices=["token", "channel", "none"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--profile", action="store_true", help="add the top ops of FT and LDIFS")
    parser.add_argument("--quick", action="store_true", help="tiny ViT only, 3 rounds")
    parser.add_argument("--out", default="benchmarks/results/ldifs_overhead.json")
    args = parser.parse_args(argv)
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    if args.rounds < 1 or args.steps < 0 or args.seconds_per_block <= 0:
        parser.error(
            f"need --rounds >= 1, --steps >= 0 and --seconds-per-block > 0; got {args.rounds}, "
            f"{args.steps} and {args.seconds_per_block}"
        )
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.quick:
        args.cases, args.rounds = ["tiny-vit-128"], 3
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # self.log outside a Trainer, open_clip's random init

    results: dict[str, dict] = {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.cases:
        results[name] = run_case(name, args)
        _print_case(name, results[name])
        _write(out, results, args)  # after every case: a long run that is cut short keeps some
    print(f"wrote {out}", file=sys.stderr)


def _write(out: Path, results: dict, args: argparse.Namespace) -> None:
    report = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "rounds": args.rounds,
        "memory_slack": MEMORY_SLACK,
        "cases": results,
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
