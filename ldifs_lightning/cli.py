"""The ``ldifs`` command: LightningCLI over the package's modules and DataModules.

ldifs fit --config configs/demo/ldifs.yaml
ldifs fit --config configs/demo/ldifs.yaml --trainer.devices 2 --trainer.strategy ddp
ldifs fit --config configs/demo/ldifs.yaml --print_config
"""

from __future__ import annotations

import sys

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ldifs_lightning import __version__
from ldifs_lightning.data import FineTuneDataModule  # noqa: F401  (importable by class_path)
from ldifs_lightning.modules import LDIFSModule

# Seed used when a config does not set seed_everything, so runs are reproducible by default.
DEFAULT_SEED = 0


class LDIFSCLI(LightningCLI):
    """LightningCLI with the data's class names and templates linked into the model."""

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        parser.add_argument("--version", action="version", version=f"ldifs-lightning {__version__}")
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data.classnames", "model.init_args.classnames", apply_on="instantiate"
        )
        parser.link_arguments("data.templates", "model.init_args.templates", apply_on="instantiate")


def main(args: list[str] | None = None) -> None:
    """Run the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests and notebooks).

    ``ldifs export --ckpt_path CKPT --output_dir DIR`` writes an open_clip model folder; every
    other subcommand is LightningCLI's.
    """
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["export"]:
        from jsonargparse import auto_cli

        from ldifs_lightning.export import export_checkpoint

        auto_cli(export_checkpoint, args=argv[1:], as_positional=False)
        return
    LDIFSCLI(
        LDIFSModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=DEFAULT_SEED,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
