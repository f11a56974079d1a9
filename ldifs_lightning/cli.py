"""The ``ldifs`` command: LightningCLI over the package's modules and DataModules, plus tools.

ldifs fit --config demo/ldifs
ldifs fit --config demo/ldifs --trainer.devices 2 --trainer.strategy ddp
ldifs fit --config data/eurosat --config methods/ldifs --print_config
ldifs export --ckpt_path last.ckpt --output_dir exported/
ldifs export --model_name ViT-B-32 --pretrained openai --dataset eurosat --output_dir exported/
ldifs demo --methods [ft,ldifs] --out runs/my-demo
ldifs continual --config continual/demo --out runs/my-sequence
ldifs compare --quick --out runs/compare-quick
ldifs evaluate --paths [runs/ldifs/last.ckpt] --suite [digits,shapes] --out runs/evaluate

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's; a *tool* subcommand
(``export``, ``demo``, ``continual``, ``compare``, ``evaluate``) is a plain function whose
typed signature and docstring jsonargparse turns into options and their help. Every subcommand is
listed by ``ldifs --help`` and has its own ``--help``. ``--config`` takes a file or the name of a
config shipped with the package (see ``ldifs_lightning.config_files``). A bad value anywhere
ends as one line, ``error: <message>`` (see ``ldifs_lightning.cli_errors``).
"""

from __future__ import annotations

import importlib
import logging
import os
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ldifs_lightning import __version__
from ldifs_lightning.cli_errors import errors_as_one_line, running
from ldifs_lightning.config_files import ConfigFileOrName
from ldifs_lightning.data import FineTuneDataModule
from ldifs_lightning.modules import CLIPFineTuner

# Seed used when a config does not set seed_everything, so runs are reproducible by default.
DEFAULT_SEED = 0

#: ``ckpt_path`` values Lightning resolves itself instead of reading a file.
CKPT_PATH_KEYWORDS = ("last", "best", "hpc", "registry")
#: Tool subcommands: name -> "module:function". The function's typed signature becomes the
#: subcommand's options, the first line of its docstring its summary in ``ldifs --help``. The
#: module is imported when the parser is built (for the options), not at ``import cli``.
TOOL_SUBCOMMANDS: dict[str, str] = {
    "export": "ldifs_lightning.export:export_model",
    "demo": "ldifs_lightning.demo:demo",
    "continual": "ldifs_lightning.continual.runner:continual",
    "compare": "ldifs_lightning.compare.runner:compare",
    "evaluate": "ldifs_lightning.evaluate:evaluate",
}
CONFIG_HELP = (
    "A YAML config: a file, or the name of a config shipped with the package (e.g. demo/ldifs, "
    "methods/ft, data/eurosat; `configs/` and `.yaml` optional). Repeat to merge several."
)


def _tool_function(name: str) -> Callable[..., Any]:
    module_name, function_name = TOOL_SUBCOMMANDS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)


class LDIFSCLI(LightningCLI):
    """LightningCLI with the data's class names and templates linked into the model, the tool
    subcommands next to LightningCLI's, and parse errors raised (not printed) so that
    :func:`main` reports them as one line."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # LightningCLI.init_parser, with a --config that also takes shipped configs' names.
        # Raise ArgumentError instead of printing usage + exiting: main() prints one line.
        kwargs.setdefault("exit_on_error", False)
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ConfigFileOrName, help=CONFIG_HELP)
        parser.add_argument("--version", action="version", version=f"ldifs-lightning {__version__}")
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data.classnames", "model.init_args.classnames", apply_on="instantiate"
        )
        parser.link_arguments("data.templates", "model.init_args.templates", apply_on="instantiate")

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        subcommands = parser._subcommands_action
        assert subcommands is not None  # created by super()
        for name in TOOL_SUBCOMMANDS:
            function = _tool_function(name)
            summary = (function.__doc__ or "").strip().splitlines()[0]
            tool_parser = LightningArgumentParser(description=summary, exit_on_error=False)
            tool_parser.add_argument("-c", "--config", action=ConfigFileOrName, help=CONFIG_HELP)
            tool_parser.add_function_arguments(function, as_group=False)
            _bool_options_as_flags(tool_parser, function)
            subcommands.add_subcommand(name, tool_parser, help=summary)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        with warnings.catch_warnings():
            # main(args) passes a list on purpose (tests, notebooks); Lightning warns about it.
            warnings.filterwarnings(
                "ignore", "LightningCLI's args parameter is intended", category=UserWarning
            )
            super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand in TOOL_SUBCOMMANDS:
            # A tool is a plain function: run it and stop here, before LightningCLI builds a
            # model, a DataModule and a Trainer that the tool does not use.
            options: Namespace = self.config[subcommand]
            kwargs = {k: v for k, v in options.items() if k not in ("config", "__path__")}
            _tool_function(subcommand)(**kwargs)
            raise SystemExit(0)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Check data, module and callbacks before the Trainer exists, so bad input fails before
        the Trainer prints its banner or creates a log directory.

        Runs the DataModule's ``setup`` (its files), the module's ``check_data`` (class count,
        image size) and, for ``fit``, each callback's ``check_fit`` (suite files, WiSE-FT's
        pre-trained weights). The data checks are skipped when the DataModule may still download
        (the Trainer's ``prepare_data`` must run first, on one process)."""
        _check_ckpt_path(self.config.get(str(self.subcommand), {}).get("ckpt_path"))
        data = self.datamodule
        if (
            self.subcommand
            and isinstance(data, FineTuneDataModule)
            and not data.hparams.get("download")
        ):
            data.setup(self.subcommand)  # idempotent: the Trainer's own setup() reuses the splits
            check_data = getattr(self.model, "check_data", None)
            if callable(check_data):
                check_data(data)
        if self.subcommand == "fit":
            # Callbacks that check files or the module at setup("fit") expose it as check_fit.
            callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
            for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
                check_fit = getattr(callback, "check_fit", None)
                if callable(check_fit):
                    check_fit(self.model)
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        # Input was checked before the run; what fails inside it keeps its traceback.
        with running():
            super()._run_subcommand(subcommand)


def _bool_options_as_flags(parser: LightningArgumentParser, function: Callable[..., Any]) -> None:
    """Let a tool's ``bool`` options stand alone: ``--sweep`` means ``--sweep true``."""
    for name, hint in typing.get_type_hints(function).items():
        action = parser._option_string_actions.get(f"--{name}")  # argparse keeps no public map
        if hint is bool and action is not None:
            action.nargs, action.const = "?", True


def _check_ckpt_path(ckpt_path: Any) -> None:
    """A ``--ckpt_path`` that is not a file fails here, before a log directory exists."""
    if ckpt_path is None or not isinstance(ckpt_path, str | os.PathLike):
        return
    if str(ckpt_path) in CKPT_PATH_KEYWORDS or "://" in str(ckpt_path):
        return  # Lightning's own names (last, best, ...) and remote paths: Lightning resolves them
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={str(ckpt_path)!r} is not a file: pass a checkpoint written by ldifs fit "
            "(or last/best/hpc/registry)"
        )


class _ParseOnlyCLI(LDIFSCLI):
    """Parses and validates a config like ``ldifs fit`` but builds no model, data or Trainer."""

    def instantiate_classes(self) -> None:
        pass


def parse_fit_config(args: list[str]) -> dict[str, Any]:
    """The resolved config of ``ldifs fit ARGS`` as plain JSON types, without building anything.

    Bad options and values fail as they would in ``ldifs fit``.

    Example:
        >>> config = parse_fit_config(["--config", "demo/ldifs"])
        >>> config["model"]["init_args"]["model_name"]
        'ldifs-tiny-vit'
    """
    import json

    config = build_cli(args, run=False, cli_class=_ParseOnlyCLI).config
    return json.loads(json.dumps(config.as_dict(), default=str))


def build_cli(
    args: list[str] | None = None, run: bool = True, cli_class: type[LDIFSCLI] = LDIFSCLI
) -> LDIFSCLI:
    """The ``ldifs`` CLI over ``args``; with ``run=False`` it only builds model, data and Trainer.

    Example:
        >>> cli = build_cli(["--config", "demo/ldifs"], run=False)  # doctest: +SKIP
        >>> cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # doctest: +SKIP
    """
    return cli_class(
        CLIPFineTuner,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=DEFAULT_SEED,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Run the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests and notebooks).

    A user error (bad option, bad value, bad dataset files) prints ``error: <message>`` and
    exits with status 2; ``LDIFS_TRACEBACK=1`` shows the full traceback instead.
    """
    # "Seed set to 0" on every start is noise next to a one-line error; the seed is in config.yaml.
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    # Lightning's own pytree helper calls a torch check deprecated in this torch: not ours to fix,
    # and printed on every fit.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    with errors_as_one_line(args):
        build_cli(args)


if __name__ == "__main__":
    main()
