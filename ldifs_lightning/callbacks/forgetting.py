"""ConceptForgettingCallback: live zero-shot and linear-probe forgetting and calibration."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from ldifs_lightning.data import get_dataset_info
from ldifs_lightning.evaluation.feature_cache import FeatureCache
from ldifs_lightning.evaluation.forgetting import (
    PretrainedReference,
    check_metrics,
    encoder_accuracies,
    forgetting_deltas,
    measure_forgetting,
    pretrained_reference,
    text_tower_classifier,
)
from ldifs_lightning.evaluation.suite import ForeignDataset, check_sample_caps, registry_suite
from ldifs_lightning.models import image_size_of
from ldifs_lightning.models.text_tower import TextTower
from ldifs_lightning.reporting.console import format_forgetting_table
from ldifs_lightning.reporting.csv_files import history_rows, write_history_csv
from ldifs_lightning.reporting.plots import plot_history

DEFAULT_CACHE_DIR = "~/.cache/ldifs-lightning/features"
EncoderGetter = Callable[[LightningModule], nn.Module]


def autocast_dtype_of(trainer: Trainer) -> torch.dtype | None:
    """The autocast dtype of ``trainer``'s precision (``bf16-*``, ``16-*``), else None."""
    precision = str(trainer.precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None


class ConceptForgettingCallback(Callback):
    """Measure concept forgetting on a suite of foreign datasets while training.

    At fit start it measures the pre-trained encoder once (features from the on-disk cache when
    possible); at the end of every ``every_n_epochs``-th training epoch it measures the current
    encoder and logs, per dataset, ``forgetting/<dataset>/lp_acc``, ``.../zs_acc``,
    ``.../delta_lp``, ``.../delta_zs`` and the suite means ``forgetting/mean_delta_lp`` and
    ``forgetting/mean_delta_zs`` (accuracies and deltas in percentage points). Next to each
    accuracy it logs the expected calibration error of the same predictions (15 bins, l1, in %):
    ``.../lp_ece`` (the probe's logits), ``.../zs_ece`` (``logit_scale.exp()`` x cosine, with the
    scale of the model whose text tower gives the class embeddings), their deltas
    ``.../delta_lp_ece``, ``.../delta_zs_ece`` (positive: calibration got worse) and the means
    ``forgetting/mean_delta_lp_ece``, ``forgetting/mean_delta_zs_ece``. At fit end rank zero
    writes ``forgetting.csv`` and ``forgetting.png`` into the log directory and prints a table.
    When the module trains its own text tower (``text_tower``, as FLYP does), zero-shot uses the
    current text tower (and its current logit scale) and the CSV's ``zero_shot_text_tower``
    column says so.

    With ``final_full_size`` the encoder at the end of training is measured once more on the
    *whole* splits of every suite dataset (no caps), against the pre-trained encoder measured on
    the whole splits at fit start (its features cached like the capped baseline's), as the
    reference code measures: at train end every rank takes part in the extraction, the results
    are logged to the Trainer's loggers as ``forgetting_full/<dataset>/lp_acc``, ...,
    ``forgetting_full/mean_delta_lp``, ... (the same keys as above) and put into
    ``trainer.callback_metrics``; at fit end rank zero writes ``forgetting_full.csv`` (the
    columns of ``forgetting.csv``) next to ``forgetting.csv`` and prints a second table. The
    per-epoch measurements stay capped. The result is kept in :attr:`final_full`.

    The pre-trained reference (image encoder for the baseline, text tower for zero-shot class
    embeddings) is built from ``model_name``/``pretrained``, by default the module's own
    hyper-parameters (as ``LDIFSModule`` has them). Without them the baseline is the module's
    encoder as it is when fit starts, and only ``linear_probe`` is available.

    Args:
        suite: Registry names (``ldifs_lightning.data.list_datasets()``), ``folder:PATH``
            folders of your own images, and/or
            :class:`~ldifs_lightning.evaluation.suite.ForeignDataset` objects.
        root: Folder holding the registry datasets' files.
        metrics: Any of ``linear_probe`` and ``zero_shot``.
        max_train_samples: Per dataset cap on probe-training samples (seeded subset), or null.
        max_test_samples: Per dataset cap on test samples (seeded subset), or null.
        every_n_epochs: Evaluate at the end of every n-th epoch.
        batch_size: Images per forward pass during feature extraction.
        num_workers: DataLoader workers during feature extraction.
        cache_dir: Where pre-trained features are cached; null disables the cache.
        model_name: open_clip name of the pre-trained model; null takes the module's.
        pretrained: Its weights (tag or path); used when ``model_name`` is given.
        image_size: Input size for the suite's transform; null reads it from the encoder.
        download: Let registry loaders download missing files where they can.
        encoder: Callable returning the image encoder from the module (Python use); by default
            the module's ``image_encoder`` attribute.
        seed: Seed of the sample caps and of the probe's held-out split.
        verify_checksums: md5-check CIFAR/SVHN/STL-10 files; false accepts copies you made.
        final_full_size: At the end of training, also measure the final encoder on whole splits
            against a whole-split pre-trained baseline (comparable to the paper's numbers).

    Attributes:
        baseline: Pre-trained accuracies per dataset on the capped splits.
        history: One entry per evaluation: ``epoch``, ``step``, ``accuracies``, ``text_tower``.
        full_baseline: Pre-trained accuracies per dataset on whole splits (``final_full_size``
            or ``evaluate(..., full_size=True)``); empty until measured.
        final_full: The whole-split measurement at the end of training, an entry like those of
            ``history``; None until then (and always without ``final_full_size``).

    Example:
        >>> callback = ConceptForgettingCallback(["shapes"], metrics=["linear_probe"])
        >>> trainer = Trainer(callbacks=[callback])  # doctest: +SKIP
        >>> paper = ConceptForgettingCallback(["shapes"], final_full_size=True)
        >>> paper.final_full is None
        True
    """

    def __init__(
        self,
        suite: Sequence[str | ForeignDataset],
        root: str = "data",
        metrics: Sequence[Literal["linear_probe", "zero_shot"]] = ("linear_probe", "zero_shot"),
        max_train_samples: int | None = 2000,
        max_test_samples: int | None = 1000,
        every_n_epochs: int = 1,
        batch_size: int = 256,
        num_workers: int = 0,
        cache_dir: str | None = DEFAULT_CACHE_DIR,
        model_name: str | None = None,
        pretrained: str | None = None,
        image_size: int | None = None,
        download: bool = False,
        encoder: EncoderGetter | None = None,
        seed: int = 0,
        verify_checksums: bool = True,
        final_full_size: bool = False,
    ) -> None:
        if not suite:
            raise ValueError("the forgetting suite is empty: name at least one dataset")
        check_metrics(metrics)
        check_sample_caps(max_train_samples, max_test_samples)
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be at least 1")
        for member in suite:
            if isinstance(member, str):
                info = get_dataset_info(member)  # unknown names fail here, before training
                if "zero_shot" in metrics and not info.classnames:
                    raise ValueError(f"dataset {member!r} has no class names; zero_shot needs them")
            elif "zero_shot" in metrics and not member.classnames:
                raise ValueError(
                    f"dataset {member.name!r} has no class names; give classnames or use "
                    "metrics=['linear_probe']"
                )
        self.suite_spec = list(suite)
        self.root = root
        self.metrics = list(metrics)
        self.max_train_samples, self.max_test_samples = max_train_samples, max_test_samples
        self.every_n_epochs = every_n_epochs
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache_dir = cache_dir
        self.model_name, self.pretrained = model_name, pretrained
        self.image_size = image_size
        self.download = download
        self.get_encoder = encoder
        self.seed = seed
        self.verify_checksums = verify_checksums
        self.final_full_size = final_full_size
        self.baseline: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, Any]] = []
        self.full_baseline: dict[str, dict[str, float]] = {}
        self.final_full: dict[str, Any] | None = None
        self._suite: list[ForeignDataset] | None = None
        self._full_suite: list[ForeignDataset] | None = None
        self._class_embeddings: dict[str, torch.Tensor] | None = None
        self._zero_shot_scale: float | None = None
        self._cache: FeatureCache | None = None

    # ----------------------------------------------------------------------------- set-up
    def _encoder_of(self, module: LightningModule) -> nn.Module:
        if self.get_encoder is not None:
            return self.get_encoder(module)
        encoder = getattr(module, "image_encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ValueError(
                f"ConceptForgettingCallback found no image encoder on {type(module).__name__}: "
                "give the module an `image_encoder` attribute or pass "
                "encoder=lambda module: module.<your encoder>"
            )
        return encoder

    def _resolve_model(self, module: LightningModule | None) -> tuple[str | None, str | None]:
        if self.model_name is not None or module is None:
            return self.model_name, self.pretrained
        hparams = getattr(module, "hparams", {})
        return hparams.get("model_name"), hparams.get("pretrained")

    def _build_suite(self, encoder: nn.Module, full_size: bool = False) -> list[ForeignDataset]:
        """The suite with this callback's caps, or with whole splits when ``full_size``."""
        suite = self._full_suite if full_size else self._suite
        if suite is None:
            size = self.image_size or image_size_of(encoder)
            names = [m for m in self.suite_spec if isinstance(m, str)]
            caps = (None, None) if full_size else (self.max_train_samples, self.max_test_samples)
            built = {}
            if names:
                for member in registry_suite(
                    names,
                    self.root,
                    size,
                    *caps,
                    self.seed,
                    self.download,
                    self.verify_checksums,
                ):
                    built[member.name] = member
            # ForeignDataset objects are measured as given, capped or not.
            suite = [built[m] if isinstance(m, str) else m for m in self.suite_spec]
            if full_size:
                self._full_suite = suite
            else:
                self._suite = suite
        return suite

    def _open_cache(self) -> FeatureCache | None:
        if self._cache is None and self.cache_dir is not None:
            self._cache = FeatureCache(Path(os.path.expanduser(self.cache_dir)))
        return self._cache

    def _reference(
        self, module: LightningModule | None, device: torch.device
    ) -> PretrainedReference | None:
        """The pre-trained image encoder and zero-shot classifier; None without a model name.

        Keeps the zero-shot classifier (class embeddings and logit scale) for later measurements.
        """
        model_name, pretrained = self._resolve_model(module)
        if model_name is None:
            if "zero_shot" in self.metrics:
                raise ValueError(
                    "zero_shot needs the pre-trained text tower: pass model_name and pretrained "
                    "to ConceptForgettingCallback, or use metrics=['linear_probe']"
                )
            self._class_embeddings, self._zero_shot_scale = None, None
            return None
        reference = pretrained_reference(
            model_name, pretrained, self._build_suite, metrics=self.metrics, device=device
        )
        self._class_embeddings = reference.class_embeddings
        self._zero_shot_scale = reference.zero_shot_scale
        return reference

    def _accuracies(
        self,
        encoder: nn.Module,
        device: torch.device,
        autocast: torch.dtype | None,
        cached: bool,
        zero_shot: tuple[dict[str, torch.Tensor], float] | None = None,
        full_size: bool = False,
    ) -> dict[str, dict[str, float]]:
        """``encoder_accuracies`` with this callback's settings (whole splits when ``full_size``).

        ``zero_shot`` (class embeddings, logit scale) replaces the pre-trained zero-shot classifier.
        """
        embeddings, scale = zero_shot or (self._class_embeddings, self._zero_shot_scale)
        return encoder_accuracies(
            encoder,
            self._build_suite(encoder, full_size),
            class_embeddings=embeddings,
            metrics=self.metrics,
            device=device,
            batch_size=self.batch_size,
            autocast_dtype=autocast,
            num_workers=self.num_workers,
            cache=self._open_cache() if cached else None,
            probe_seed=self.seed,
            zero_shot_scale=scale,
        )

    # ----------------------------------------------------------------------------- hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_fit(pl_module)

    def check_fit(self, pl_module: LightningModule) -> None:
        """Build the suite (its files checked) as ``setup("fit")`` does, without a Trainer.

        The ``ldifs`` command calls it before creating the Trainer, so missing or bad suite
        files fail before a log directory exists; ``setup`` then reuses the built suite.
        """
        self._build_suite(self._encoder_of(pl_module))

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        encoder = self._encoder_of(pl_module)
        reference = self._reference(pl_module, pl_module.device)
        self.final_full = None
        measure_full = self.final_full_size and not self.full_baseline
        if self.baseline and measure_full and reference is None:
            # Resumed without a model name: the module's encoder is no longer the pre-trained one.
            rank_zero_warn(
                "ConceptForgettingCallback: the checkpoint holds no whole-split baseline and "
                "without model_name the pre-trained encoder cannot be rebuilt; final_full_size "
                "is skipped for this run (pass model_name and pretrained to measure it)"
            )
            measure_full = False  # on_train_end then finds no whole-split baseline
        if self.baseline and not measure_full:  # restored from a checkpoint
            return
        pretrained = copy.deepcopy(encoder) if reference is None else reference.encoder
        del reference
        autocast = autocast_dtype_of(trainer)
        if not self.baseline:
            self.baseline = self._accuracies(pretrained, pl_module.device, autocast, cached=True)
        if measure_full:
            self.full_baseline = self._accuracies(
                pretrained, pl_module.device, autocast, cached=True, full_size=True
            )
        del pretrained

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        encoder = self._encoder_of(pl_module)
        text_tower = getattr(pl_module, "text_tower", None)
        zero_shot = self._current_zero_shot(text_tower, self._build_suite(encoder))
        current = self._accuracies(
            encoder, pl_module.device, autocast_dtype_of(trainer), cached=False, zero_shot=zero_shot
        )
        self.history.append(
            {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "accuracies": current,
                "text_tower": "current" if zero_shot else "pretrained",
            }
        )
        for key, value in forgetting_deltas(self.baseline, current).items():
            # Identical on every rank; sync_dist keeps Lightning from warning under DDP.
            pl_module.log(f"forgetting/{key}", value, on_step=False, on_epoch=True, sync_dist=True)

    def _current_zero_shot(
        self, text_tower: TextTower | None, suite: Sequence[ForeignDataset]
    ) -> tuple[dict[str, torch.Tensor], float] | None:
        """Zero-shot class embeddings and logit scale of a module's trained text tower (FLYP)."""
        if text_tower is None or "zero_shot" not in self.metrics:
            return None
        return text_tower_classifier(text_tower, suite)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Here, not at fit end: the module is still on its device and under DDP the process
        # group still serves the extraction's collectives (every rank runs this hook).
        if not self.final_full_size or not self.full_baseline:
            return
        encoder = self._encoder_of(pl_module)
        text_tower = getattr(pl_module, "text_tower", None)
        zero_shot = self._current_zero_shot(text_tower, self._build_suite(encoder, True))
        accuracies = self._accuracies(
            encoder,
            pl_module.device,
            autocast_dtype_of(trainer),
            cached=False,
            zero_shot=zero_shot,
            full_size=True,
        )
        self.final_full = {
            "epoch": trainer.current_epoch - 1,  # the loop has counted the last epoch as done
            "step": trainer.global_step,
            "accuracies": accuracies,
            "text_tower": "current" if zero_shot else "pretrained",
        }
        # self.log is not allowed in this hook: the loggers are called directly (rank zero only).
        flat = {
            f"forgetting_full/{key}": value
            for key, value in forgetting_deltas(self.full_baseline, accuracies).items()
        }
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
        trainer.callback_metrics.update({key: torch.tensor(v) for key, v in flat.items()})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # trainer.log_dir broadcasts from rank zero: every rank must ask before any returns.
        directory = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        if self.history:
            rows = history_rows(self.baseline, self.history)
            write_history_csv(rows, directory / "forgetting.csv")
            plot_history(rows, directory / "forgetting.png")
            latest = forgetting_deltas(self.baseline, self.history[-1]["accuracies"])
            rank_zero_info(
                f"Concept forgetting after epoch {self.history[-1]['epoch']} (in %, written to "
                f"{directory}/forgetting.csv):\n{format_forgetting_table(latest, self.baseline)}"
            )
        if self.final_full is not None:
            write_history_csv(
                history_rows(self.full_baseline, [self.final_full]),
                directory / "forgetting_full.csv",
            )
            final = forgetting_deltas(self.full_baseline, self.final_full["accuracies"])
            rank_zero_info(
                "Concept forgetting at the end of training on whole splits (in %, written to "
                f"{directory}/forgetting_full.csv):\n"
                f"{format_forgetting_table(final, self.full_baseline)}"
            )

    @property
    def state_key(self) -> str:
        # Several instances (e.g. different suites) keep separate state in a checkpoint.
        names = [m if isinstance(m, str) else m.name for m in self.suite_spec]
        return self._generate_state_key(suite=names, metrics=self.metrics)

    def state_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "history": self.history,
            "full_baseline": self.full_baseline,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.baseline = state_dict["baseline"]
        self.history = state_dict["history"]
        # Checkpoints written before final_full_size have none.
        self.full_baseline = state_dict.get("full_baseline", {})

    # ----------------------------------------------------------------------------- no Trainer
    def evaluate(
        self,
        encoder: nn.Module,
        device: torch.device | str = "cpu",
        autocast_dtype: torch.dtype | None = None,
        full_size: bool = False,
    ) -> dict[str, float]:
        """The same metrics for ``encoder`` without a Trainer (keys without ``forgetting/``).

        The pre-trained baseline comes from ``model_name``/``pretrained`` (measured once, cached);
        without them only the accuracies are returned. ``full_size`` measures on whole splits
        against a whole-split baseline (also measured once and cached), as ``final_full_size``
        does at the end of training; otherwise the caps apply. Under DDP every rank must call it.

        Example:
            >>> callback = ConceptForgettingCallback(["shapes"], model_name="ldifs-tiny-vit")
            >>> metrics = callback.evaluate(finetuned.image_encoder)  # doctest: +SKIP
            >>> metrics["mean_delta_lp"]  # doctest: +SKIP
            >>> paper = callback.evaluate(finetuned.image_encoder, full_size=True)  # doctest: +SKIP
        """
        device = torch.device(device)
        baseline = self.full_baseline if full_size else self.baseline
        needs_text = "zero_shot" in self.metrics and self._class_embeddings is None
        if not baseline or needs_text:  # the pre-trained model is built once
            reference = self._reference(None, device)
            if reference is not None and not baseline:
                measured = self._accuracies(
                    reference.encoder, device, autocast_dtype, cached=True, full_size=full_size
                )
                if full_size:
                    self.full_baseline = measured
                else:
                    self.baseline = measured
        return self.measure(encoder.to(device), device, autocast_dtype, full_size)

    def measure(
        self,
        encoder: nn.Module,
        device: torch.device | str,
        autocast_dtype: torch.dtype | None = None,
        full_size: bool = False,
    ) -> dict[str, float]:
        """Accuracies of ``encoder`` and their deltas from the baseline already measured.

        ``full_size``: on whole splits, against :attr:`full_baseline`.
        """
        return measure_forgetting(
            None,
            encoder,
            self._build_suite(encoder, full_size),
            baseline=self.full_baseline if full_size else self.baseline,
            class_embeddings=self._class_embeddings,
            metrics=self.metrics,
            device=torch.device(device),
            batch_size=self.batch_size,
            autocast_dtype=autocast_dtype,
            num_workers=self.num_workers,
            probe_seed=self.seed,
            zero_shot_scale=self._zero_shot_scale,
        )
