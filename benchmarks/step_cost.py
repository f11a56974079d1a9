"""Time one training step and measure its peak memory for every method, as ratios to plain FT.

One step is what the Trainer runs per batch: ``training_step`` (the loss) + ``backward`` + AdamW
``step`` + ``zero_grad``, on synthetic images of the model's input size (no gradient clipping, no
LR scheduler). Each method is the module its ``configs/methods/<method>.yaml`` names
(``model.class_path``: ``FineTuneModule``, ``LDIFSModule`` or ``FLYPModule``) built with that
config's ``init_args``, regularisers included (``model_name``/``pretrained`` replaced: random
init). Methods run round-robin: every round rebuilds each method's module in turn (one module in
memory at a time), warms it up, measures its peak memory and times its steps; ratios are taken
against FT in the same round and the report gives their medians over the rounds.

A second part measures the ``ConceptForgettingCallback`` of ``configs/demo/ldifs.yaml`` against
one training epoch of that config: its first evaluation with an empty and with a warm feature
cache, and each later evaluation.

    python benchmarks/step_cost.py              # tiny ViT, tiny ResNet, ViT-B/32; 2 batch sizes
    python benchmarks/step_cost.py --smoke      # tiny ViT, 1 round, tiny forgetting run: seconds
    python benchmarks/step_cost.py --device cuda --precision bf16-mixed --models ViT-B-32 \\
        --batch-sizes 128 --methods FT LDIFS L2SP --no-forgetting --out gpu/step_cost.json
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import inspect
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml
from torch.profiler import ProfilerActivity, profile

from ldifs_lightning.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
METHOD_CONFIGS = REPO / "configs" / "methods"
DEMO_CONFIG = REPO / "configs" / "demo" / "ldifs.yaml"

#: Method name -> its config in configs/methods/ (LP there fits a probe once and takes no step;
#: the benchmark times head-only training: ``freeze_encoder`` with a zero-shot head).
METHODS: dict[str, str] = {
    "FT": "ft.yaml",
    "LS": "ls.yaml",
    "L2SP": "l2sp.yaml",
    "LDIFS": "ldifs.yaml",
    "FLYP": "flyp.yaml",
    "FLYP-CE": "flyp_ce.yaml",
    "LP": "lp.yaml",
}
#: Two batch sizes per model unless --batch-sizes is given (the demo trains the tiny ViT at 64).
DEFAULT_BATCH_SIZES: dict[str, tuple[int, ...]] = {
    "ldifs-tiny-vit": (64, 256),
    "ldifs-tiny-rn": (64, 256),
    "ViT-B-32": (4, 8),
}
DEFAULT_MODELS = ("ldifs-tiny-vit", "ldifs-tiny-rn", "ViT-B-32")
NUM_CLASSES = 10
TEMPLATES = ("a photo of a {}.", "a blurry photo of a {}.", "a drawing of a {}.")
Precision = Literal["32-true", "bf16-mixed"]


# --------------------------------------------------------------------------- building modules
def method_spec(method: str) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of ``configs/methods/<method>.yaml``'s model, no weights.

    The config's ``model`` section with the configs it includes (``config: ../base/...``) merged
    in as the command line merges them (see :func:`model_section`); ``init_args`` without
    ``model_name`` and ``pretrained`` (the benchmark uses random weights) and ``templates`` (it
    uses its own three, as the command line links the data's). Regularisers stay
    ``{"class_path", "init_args"}`` dicts, which the modules build themselves. Raises a one-line
    ``ValueError`` when the config names no fine-tuning module or gives it an argument its
    ``__init__`` does not take.

    Example:
        >>> spec = method_spec("L2SP")
        >>> spec["init_args"]["regularizers"][0]["init_args"]["weight"]
        0.5
    """
    path = METHOD_CONFIGS / METHODS[method]
    model = model_section(path)
    if "class_path" not in model:
        raise ValueError(
            f"{path}: no model.class_path in it or the configs it includes; name the "
            "fine-tuning module there"
        )
    cls = _fine_tuner_class(model["class_path"], path)
    options = dict(model["init_args"])
    for key in ("model_name", "pretrained", "templates"):
        options.pop(key, None)
    accepted = _arguments(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"{path}: {cls.__name__} takes no argument {unknown}; allowed: {sorted(accepted)}"
        )
    return {"class_path": model["class_path"], "init_args": options}


def model_section(path: Path) -> dict[str, Any]:
    """A config's ``model`` (``class_path``, ``init_args``) with its ``config:`` includes merged.

    As jsonargparse merges them for ``ldifs fit --config``: keys in file order, an included
    config (a path relative to the including file) at the place of its ``config:`` key, later
    values win, and a changed ``class_path`` keeps the earlier ``init_args`` the new class takes.
    """
    data = yaml.safe_load(path.read_text()) or {}
    model: dict[str, Any] = {"init_args": {}}
    for key, value in data.items():
        if key == "config":
            for include in value if isinstance(value, list) else [value]:
                model = _merge_model(model, model_section(path.parent / include), path)
        elif key == "model":
            model = _merge_model(model, value, path)
    return model


def _merge_model(base: dict[str, Any], update: Any, path: Path) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise ValueError(f"{path}: model must be a mapping with class_path and init_args")
    init_args = dict(base.get("init_args") or {})
    class_path = update.get("class_path", base.get("class_path"))
    if "class_path" in base and class_path != base["class_path"]:
        accepted = _arguments(_fine_tuner_class(str(class_path), path))
        init_args = {key: value for key, value in init_args.items() if key in accepted}
    init_args.update(update.get("init_args") or {})
    merged: dict[str, Any] = {"init_args": init_args}
    if class_path is not None:
        merged["class_path"] = str(class_path)
    return merged


def _fine_tuner_class(class_path: str, path: Path) -> type:
    """The fine-tuning module ``class_path`` names (one-line ``ValueError`` naming ``path``)."""
    from ldifs_lightning.modules import CLIPFineTuner

    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, CLIPFineTuner)):
        raise ValueError(
            f"{path}: model.class_path {class_path!r} is not a fine-tuning module; use e.g. "
            "ldifs_lightning.modules.FineTuneModule, LDIFSModule or FLYPModule"
        )
    return cls


def _arguments(cls: type) -> set[str]:
    """The keyword arguments a config may give ``cls`` (``classnames`` comes from the data)."""
    return set(inspect.signature(cls.__init__).parameters) - {"self", "classnames"}


def build_module(method: str, model_name: str) -> torch.nn.Module:
    """A randomly initialised module configured as ``method`` (see :func:`method_spec`), in
    train mode.

    Example:
        >>> module = build_module("LP", "ldifs-tiny-vit")
        >>> module.freeze_encoder, type(module).__name__
        (True, 'FineTuneModule')
    """
    spec = method_spec(method)
    init_args = spec["init_args"]
    if init_args.get("freeze_encoder") and init_args.get("head_init") == "linear_probe":
        # lp.yaml's LP fits a probe once and takes no step; the LP row times a step of
        # head-only training (fixed encoder, zero-shot head).
        init_args["head_init"] = "zeroshot"
    cls = _fine_tuner_class(spec["class_path"], METHOD_CONFIGS / METHODS[method])
    classnames = [f"class {index}" for index in range(NUM_CLASSES)]
    module = cls(classnames, TEMPLATES, model_name=model_name, pretrained=None, **spec["init_args"])
    return module.train()


# --------------------------------------------------------------------------- one step
def autocast_context(
    device: torch.device, precision: Precision
) -> contextlib.AbstractContextManager:
    """Lightning's ``bf16-mixed``: the forward (loss) under bf16 autocast, the rest in fp32."""
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    precision: Precision,
) -> Callable[[], None]:
    """One optimisation step as a closure: loss, backward, AdamW step, zero_grad."""
    device = batch[0].device

    def step() -> None:
        # training_step logs; without a Trainer, Lightning warns and skips the logging.
        with warnings.catch_warnings(), autocast_context(device, precision):
            warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``step``, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- peak memory
def live_tensor_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer, *extra) -> int:
    """Bytes of the distinct storages held by the module, the optimizer state and ``extra``."""
    tensors = [*module.parameters(), *module.buffers(), *extra]
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    for state in optimizer.state.values():
        tensors += [value for value in state.values() if torch.is_tensor(value)]
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def cpu_peak_bytes(step: Callable[[], None], resident: int) -> int:
    """``resident`` + the highest net allocation seen during ``step`` by the torch profiler.

    The profiler reports every allocation and free of torch's CPU allocator during the step; their
    running sum, in time order, is the memory the step added on top of what was live before it.
    """
    with (
        warnings.catch_warnings(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        warnings.simplefilter("ignore")
        step()
    events = [
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]
    running = peak = 0
    for _, nbytes in sorted(events):
        running += nbytes
        peak = max(peak, running)
    return resident + peak


def cuda_peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated`` over ``step`` (what was live before it included)."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def peak_bytes(
    step: Callable[[], None],
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> int:
    device = batch[0].device
    if device.type == "cuda":
        return cuda_peak_bytes(step, device)
    return cpu_peak_bytes(step, live_tensor_bytes(module, optimizer, *batch))


# --------------------------------------------------------------------------- one method, one round
def synthetic_batch(
    batch_size: int, image_size: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = torch.randint(NUM_CLASSES, (batch_size,), generator=generator)
    return images.to(device), labels.to(device)


def tap_gradient_bytes(
    module: torch.nn.Module, images: torch.Tensor, precision: Precision
) -> int | None:
    """Bytes of one gradient per LDIFS tap at this batch (None without an LDIFS regulariser).

    LDIFS computes each tap's gradient with its value and keeps it until the backward, in the
    tap's dtype: the one cost beyond the frozen copy that exact LDIFS cannot avoid without
    recomputing the reference taps. The shapes come from one forward in eval mode (no batch
    statistics updated).
    """
    from ldifs_lightning.models import FeatureTaps
    from ldifs_lightning.regularizers import LDIFS

    terms = [t for t in getattr(module, "regularizers", []) if isinstance(t, LDIFS)]
    if not terms:
        return None
    total = 0
    encoder = module.image_encoder
    modes = [(submodule, submodule.training) for submodule in encoder.modules()]
    encoder.eval()
    try:
        for term in terms:
            with (
                torch.no_grad(),
                autocast_context(images.device, precision),
                FeatureTaps(encoder, term.tap_names) as taps,
            ):
                encoder(images)
            total += sum(tap.numel() * tap.element_size() for tap in taps.features())
    finally:
        for submodule, mode in modes:
            submodule.training = mode
    return total


def time_steps(step: Callable[[], None], device: torch.device, steps: int | None) -> list[float]:
    """Seconds of ``steps`` calls of ``step``; by default enough for about half a second (1-10)."""
    times = [timed(step, device)]
    wanted = steps or max(1, min(10, math.ceil(0.5 / max(times[0], 1e-6))))
    times += [timed(step, device) for _ in range(wanted - 1)]
    return times


def measure_method(
    method: str,
    model_name: str,
    batch_sizes: Sequence[int],
    device: torch.device,
    precision: Precision,
    steps: int | None,
    measure_memory: bool,
) -> dict[int, dict[str, Any]]:
    """Build ``method`` and measure ``{batch size: {"step_s", "steps", "peak_bytes"}}``.

    Per batch size: a warm-up step (the first also creates the AdamW state), the step measured
    for peak memory when ``measure_memory`` (it is the warm-up of every later batch size), then
    the timed steps, whose median is ``step_s``.
    """
    module = build_module(method, model_name).to(device)
    # What setup("fit") does for the Trainer's precision: with ``reference_dtype: auto`` the LDIFS
    # copy is stored in bf16 under bf16-mixed (a no-op at 32-true, and for modules without it).
    module.set_reference_dtype(precision)
    reference = module.reference_encoder
    copy_dtype = None if reference is None else str(next(reference.parameters()).dtype)
    # What the frozen copy itself occupies: the memory target allows exactly this beyond FT.
    copy_bytes = 0
    if reference is not None:
        copy_bytes = sum(t.nbytes for t in [*reference.parameters(), *reference.buffers()])
    optimizer = torch.optim.AdamW(
        module.trainable_parameters(),
        lr=module.lr,
        weight_decay=module.weight_decay,
    )
    results = {}
    for index, batch_size in enumerate(batch_sizes):
        batch = synthetic_batch(batch_size, module.image_size, device)
        step = make_step(module, optimizer, batch, precision)
        if index == 0 or not measure_memory:
            timed(step, device)
        peak = peak_bytes(step, module, optimizer, batch) if measure_memory else None
        gradient_bytes = tap_gradient_bytes(module, batch[0], precision) if peak else None
        times = time_steps(step, device, steps)
        results[batch_size] = {
            "step_s": statistics.median(times),
            "steps": len(times),
            "peak_bytes": peak,
            "frozen_copy_dtype": copy_dtype,
            "frozen_copy_bytes": copy_bytes,
            "tap_gradient_bytes": gradient_bytes,
        }
        del batch, step
    del module, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def step_cost(
    model_name: str,
    batch_sizes: Sequence[int],
    methods: Sequence[str],
    rounds: int,
    device: torch.device,
    precision: Precision,
    steps: int | None,
) -> list[dict[str, Any]]:
    """One entry per batch size: per method, per-round step times and ratios to FT's time in the
    same round, and peak memory (measured in the first round: it does not vary between rounds)."""
    per_round: list[dict[str, dict[int, dict[str, Any]]]] = []
    for index in range(rounds):
        per_round.append(
            {
                method: measure_method(
                    method, model_name, batch_sizes, device, precision, steps, index == 0
                )
                for method in methods
            }
        )
        print(f"  {model_name}: round {index + 1}/{rounds} done", flush=True)
    entries = []
    for batch_size in batch_sizes:
        rows = {}
        for method in methods:
            seconds = [r[method][batch_size]["step_s"] for r in per_round]
            ratios = [
                s / r["FT"][batch_size]["step_s"] for s, r in zip(seconds, per_round, strict=True)
            ]
            peak = per_round[0][method][batch_size]["peak_bytes"]
            median_s = statistics.median(seconds)
            rows[method] = {
                "step_s": seconds,
                "timed_steps": [r[method][batch_size]["steps"] for r in per_round],
                "step_s_median": median_s,
                "images_per_s": batch_size / median_s,
                "time_ratio_to_ft": ratios,
                "time_ratio_median": statistics.median(ratios),
                "peak_bytes": peak,
                "memory_ratio": peak / per_round[0]["FT"][batch_size]["peak_bytes"],
                "frozen_copy_dtype": per_round[0][method][batch_size]["frozen_copy_dtype"],
                "frozen_copy_bytes": per_round[0][method][batch_size]["frozen_copy_bytes"],
                "tap_gradient_bytes": per_round[0][method][batch_size]["tap_gradient_bytes"],
            }
        entries.append({"model": model_name, "batch_size": batch_size, "methods": rows})
    return entries


# --------------------------------------------------------------------------- forgetting callback
def _demo_cli(workdir: Path, epochs: int, smoke: bool):
    """The demo LDIFS run (``configs/demo/ldifs.yaml``) built but not started, without logs."""
    from ldifs_lightning.cli import build_cli

    args = [
        "--config",
        str(DEMO_CONFIG),
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.default_root_dir",
        str(workdir),
        "--trainer.logger",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.num_sanity_val_steps",
        "0",
    ]
    if smoke:
        args += ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    return build_cli(args, run=False)


def forgetting_cost(rounds: int, smoke: bool) -> dict[str, Any]:
    """The demo's forgetting callback against one epoch of the demo config, ``rounds`` times.

    The demo run trains ``rounds`` epochs without its callback; after each epoch, in the same
    hook, a fresh callback with the demo's settings (suite, metrics, caps) evaluates the current
    encoder with an empty cache (cold), another one with that filled cache (warm), and the warm
    one evaluates again (what every later epoch costs).
    """
    from lightning.pytorch import Callback

    from ldifs_lightning.callbacks import ConceptForgettingCallback

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        cli = _demo_cli(workdir / "run", rounds, smoke)
        demo = next(c for c in cli.trainer.callbacks if isinstance(c, ConceptForgettingCallback))
        cli.trainer.callbacks.remove(demo)
        caps = (64, 32) if smoke else (demo.max_train_samples, demo.max_test_samples)

        def fresh(cache: Path) -> ConceptForgettingCallback:
            return ConceptForgettingCallback(
                demo.suite_spec,
                root=demo.root,
                metrics=demo.metrics,
                max_train_samples=caps[0],
                max_test_samples=caps[1],
                batch_size=demo.batch_size,
                cache_dir=str(cache),
                model_name=cli.model.model_name,
                pretrained=cli.model.encoder_source.pretrained,
                seed=demo.seed,
            )

        records: list[dict[str, float]] = []

        class Probe(Callback):
            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                epoch_s = time.perf_counter() - self.start
                encoder = pl_module.image_encoder
                cache = workdir / f"cache-{trainer.current_epoch}"
                start = time.perf_counter()
                fresh(cache).evaluate(encoder)
                cold_s = time.perf_counter() - start
                warm = fresh(cache)
                start = time.perf_counter()
                warm.evaluate(encoder)
                warm_s = time.perf_counter() - start
                start = time.perf_counter()
                warm.measure(encoder, "cpu")
                later_s = time.perf_counter() - start
                records.append(
                    {
                        "epoch_s": epoch_s,
                        "first_cold_s": cold_s,
                        "first_warm_s": warm_s,
                        "later_s": later_s,
                    }
                )
                print(f"  forgetting: epoch {trainer.current_epoch + 1}/{rounds} done", flush=True)

        cli.trainer.callbacks.append(Probe())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        steps_per_epoch = cli.trainer.num_training_batches
    medians = {key: statistics.median(r[key] for r in records) for key in records[0]}
    shares = {
        f"{key[:-2]}_share": statistics.median(r[key] / r["epoch_s"] for r in records)
        for key in ("first_cold_s", "first_warm_s", "later_s")
    }
    return {
        "config": str(DEMO_CONFIG.relative_to(REPO)),
        "task": cli.datamodule.hparams.dataset,
        "model": cli.model.model_name,
        "pretrained": cli.model.encoder_source.pretrained,
        "suite": [m if isinstance(m, str) else m.name for m in demo.suite_spec],
        "metrics": demo.metrics,
        "max_train_samples": caps[0],
        "max_test_samples": caps[1],
        "batch_size": cli.datamodule.hparams.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "rounds": records,
        "median_s": medians,
        **shares,
    }


# --------------------------------------------------------------------------- environment
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform.processor() or the architecture."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
        "device_name": cpu_model(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cuda_devices"] = torch.cuda.device_count()
    return env


MEMORY_METHOD = {
    "cpu": "parameters + buffers + optimizer state + batch (distinct storages) before the step, "
    "plus the highest running sum of torch.profiler's CPU allocation/free events during it",
    "cuda": "torch.cuda.max_memory_allocated over the step after reset_peak_memory_stats",
}


# --------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed, give a number >= 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="step_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny ViT, 1 round: seconds (tests)")
    parser.add_argument("--models", nargs="+", default=None, help=f"default: {DEFAULT_MODELS}")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=_positive,
        default=None,
        help=f"for every model (default per model: {DEFAULT_BATCH_SIZES}, else 4 8)",
    )
    parser.add_argument("--repeats", type=_positive, default=None, help="rounds (default 3)")
    parser.add_argument(
        "--steps", type=_positive, default=None, help="timed steps per round (default: ~0.5 s)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="torch CPU threads (default: 1 with --device cpu, torch's default with cuda)",
    )
    parser.add_argument("--no-forgetting", action="store_true", help="skip the callback part")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step_cost.json"))
    args = parser.parse_args(argv)

    if args.smoke:
        args.models = args.models or ["ldifs-tiny-vit"]
        args.batch_sizes = args.batch_sizes or [4, 8]
        args.repeats = args.repeats or 1
        args.steps = args.steps or 1
    args.models = args.models or list(DEFAULT_MODELS)
    args.repeats = args.repeats or 3
    if args.threads is None and args.device == "cpu":
        # One thread: on a shared 2-core machine two threads wait on each other (the demo too).
        args.threads = 1
    import open_clip

    import ldifs_lightning.models  # noqa: F401  (registers the tiny models)

    known = open_clip.list_models()
    for name in args.models:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
            hint = f"close matches: {close}" if close else "see open_clip.list_models()"
            parser.error(f"--models: unknown model {name!r} ({hint})")
    if "FT" not in args.methods:
        parser.error("--methods must include FT: every ratio is to FT measured in the same round")
    args.methods = ["FT", *dict.fromkeys(m for m in args.methods if m != "FT")]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(
            "--device cuda: no CUDA device is visible (torch.cuda.is_available() is False); "
            "use --device cpu"
        )
    for method in args.methods:  # a config the modules cannot take: stop before measuring
        try:
            method_spec(method)
        except ValueError as error:
            parser.error(f"--methods {method}: {error}")
    return args


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def print_summary(report: dict[str, Any]) -> None:
    for entry in report["step"]:
        print(f"{entry['model']}, batch {entry['batch_size']}:")
        for method, row in entry["methods"].items():
            print(
                f"  {method:>8}  {1000 * row['step_s_median']:9.1f} ms/step  "
                f"time x{row['time_ratio_median']:.2f}  memory x{row['memory_ratio']:.2f}  "
                f"({row['peak_bytes'] / 2**20:.0f} MiB)"
            )
    if report.get("forgetting"):
        f = report["forgetting"]
        print(
            f"forgetting callback / demo epoch ({f['median_s']['epoch_s']:.1f} s): first "
            f"evaluation cold {f['first_cold_share']:.2f}, warm {f['first_warm_share']:.2f}, "
            f"later {f['later_share']:.2f}"
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON report to ``--out`` and return it."""
    args = parse_args(argv)
    device = torch.device(args.device)
    start = time.perf_counter()
    with torch_threads(args.threads):
        torch.manual_seed(0)
        step = []
        for model_name in args.models:
            sizes = args.batch_sizes or DEFAULT_BATCH_SIZES.get(model_name, (4, 8))
            step += step_cost(
                model_name, sizes, args.methods, args.repeats, device, args.precision, args.steps
            )
        forgetting = None if args.no_forgetting else forgetting_cost(args.repeats, args.smoke)
        env = environment(device)
    report = {
        "benchmark": "step_cost",
        "settings": {
            "smoke": args.smoke,
            "repeats": args.repeats,
            "steps": args.steps,
            "threads": args.threads,
            "device": args.device,
            "precision": args.precision,
            "methods": {m: f"configs/methods/{METHODS[m]}" for m in args.methods},
            "num_classes": NUM_CLASSES,
            "templates": len(TEMPLATES),
            "step": "training_step + backward + AdamW step + zero_grad (no clipping, no scheduler)",
            "memory_method": MEMORY_METHOD[args.device],
        },
        "environment": env,
        "seconds": round(time.perf_counter() - start, 1),
        "step": step,
        "forgetting": forgetting,
    }
    print_summary(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
