"""The ``ldifs`` command: LightningCLI over the package's modules and DataModules.

ldifs fit --config configs/demo/ldifs.yaml
ldifs fit --config configs/demo/ldifs.yaml --trainer.devices 2 --trainer.strategy ddp
ldifs fit --config configs/demo/ldifs.yaml --print_config
"""

from __future__ import annotations

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
    """Run the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests and notebooks)."""
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
