"""The command line: a ``LightningCLI`` over ``CatDogClassifier`` and ``CatDogDataModule``."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from catdog_pl.data import CatDogDataModule, DataLayoutError
from catdog_pl.module import CatDogClassifier

SEED = 42


class CatDogCLI(LightningCLI):
    """``fit``, ``validate``, ``test`` and ``predict``, with the data following the model's image size."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model is the source of truth: a checkpoint's image size reaches the data on test and predict.
        parser.link_arguments("model.image_size", "data.image_size")


def main(args: ArgsType = None) -> CatDogCLI | None:
    """Run the CLI on ``args`` (``sys.argv[1:]`` when ``None``); data-layout problems exit with one line."""
    try:
        return CatDogCLI(
            CatDogClassifier,
            CatDogDataModule,
            seed_everything_default=SEED,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except DataLayoutError as error:
        print(f"catdog_pl: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
