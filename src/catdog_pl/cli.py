"""The command line: a ``LightningCLI`` over ``CatDogClassifier`` and ``CatDogDataModule``."""

from __future__ import annotations

import sys

import torch
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from catdog_pl.data import CatDogDataModule, DataLayoutError
from catdog_pl.module import CatDogClassifier

SEED = 42


class CatDogCLI(LightningCLI):
    """``fit``, ``validate``, ``test`` and ``predict``, with the data following the model's image size."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model is the source of truth: a checkpoint's image size reaches the data on test and predict.
        parser.link_arguments("model.image_size", "data.image_size")

    def before_instantiate_classes(self) -> None:
        trainer = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        if trainer.precision is None:
            trainer.precision = default_precision(trainer.accelerator)


def bf16_is_fast(accelerator: str | object = "auto") -> bool:
    """Whether bf16 autocast runs natively here: a bf16 GPU, or a CPU with AVX512-BF16 or AMX."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if accelerator in ("auto", "cpu"):
        cpu = torch.cpu
        return any(
            getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def default_precision(accelerator: str | object = "auto") -> str:
    """``bf16-mixed`` where the hardware runs it natively, else ``32-true``; ``--trainer.precision`` overrides."""
    return "bf16-mixed" if bf16_is_fast(accelerator) else "32-true"


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
