"""The command line: a ``LightningCLI`` over ``CatDogClassifier`` and ``CatDogDataModule``."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from catdog_pl.data import CatDogDataModule
from catdog_pl.errors import CatDogError
from catdog_pl.module import CatDogClassifier
from catdog_pl.prediction import PredictionWriter, check_checkpoint
from catdog_pl.process import prepare_process

SEED = 42
# Warnings from the libraries that a user of the command line can do nothing about, each matched by its text and
# category; `main` hides them, so that what it prints is worth reading.
KNOWN_WARNINGS = (
    # Lightning's model summary has no size for "bf16-mixed" and says so on every fit; it then counts 32 bits a
    # parameter, which is what mixed precision stores them in.
    (r"Precision bf16-mixed is not supported by the model summary", UserWarning),
    # torch 2.14 deprecates the LeafSpec that Lightning 2.6's CombinedLoader builds for every loop
    # (Lightning-AI/pytorch-lightning#21326).
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
DESCRIPTION = (
    "The Keras cats-vs-dogs CNN on PyTorch Lightning. Subcommands: fit, validate, test and predict (below), and "
    "prepare, which downloads the full public data set into the expected layout, and report, which draws a run "
    "as PNGs and a Markdown page (python -m catdog_pl prepare --help, report --help)."
)


class CatDogCLI(LightningCLI):
    """``fit``, ``validate``, ``test`` and ``predict``, with the data following the model's image size."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model is the source of truth: a checkpoint's image size reaches the data on test and predict.
        parser.link_arguments("model.image_size", "data.image_size")
        # predict writes its CSV through this callback (--prediction.output); other subcommands leave it idle.
        parser.add_lightning_class_args(PredictionWriter, "prediction")

    def _parse_ckpt_path(self) -> None:
        # Refuse a file that is not a catdog_pl checkpoint with one line, before Lightning reads its hparams.
        subcommand = self.config.get("subcommand")
        ckpt_path = subcommand and self.config[subcommand].get("ckpt_path")
        if ckpt_path and (subcommand != "fit" or os.path.exists(ckpt_path)):
            check_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def after_predict(self) -> None:
        writer = next(cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter))
        if self.trainer.is_global_zero and writer.path is not None:
            print(writer.summary(), flush=True)
        if writer.rows and not any(row.ok for row in writer.rows):
            raise SystemExit(f"catdog_pl: error: none of the {len(writer.rows)} images could be predicted")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.precision is None:
            config.trainer.precision = default_precision(config.trainer.accelerator)
        if config.trainer.enable_progress_bar is False and config.trainer.callbacks:
            # configs/cnn.yaml sets the bar's refresh rate with a TQDMProgressBar callback, which Lightning refuses
            # beside enable_progress_bar=False: turning the bar off drops it.
            config.trainer.callbacks = [
                callback
                for callback in config.trainer.callbacks
                if not str(getattr(callback, "class_path", "")).endswith("ProgressBar")
            ]
        if self.subcommand == "fit" and config.get("ckpt_path") and os.path.isfile(config.ckpt_path):
            continue_run_folder(config.trainer, config.ckpt_path)


def continue_run_folder(trainer: Namespace, ckpt_path: str) -> None:
    """Resuming from ``<save_dir>/<name>/version_N/checkpoints/x.ckpt`` logs on into ``version_N``, not a new one.

    Only for a ``TensorBoardLogger`` whose version the user left unset, and only when the checkpoint lies in the
    folder that logger would write to; the event files then continue from the restored global step.
    """
    logger = trainer.get("logger")
    if not isinstance(logger, Namespace) or not str(logger.get("class_path", "")).endswith("TensorBoardLogger"):
        return
    args = logger.init_args
    run_dir = Path(ckpt_path).resolve().parent.parent
    if args.get("version") is not None or Path(ckpt_path).resolve().parent.name != "checkpoints":
        return
    if run_dir.parent == (Path(args.get("save_dir") or ".") / (args.get("name") or "")).resolve():
        args.version = run_dir.name


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


def quiet_known_warnings() -> None:
    """Hide ``KNOWN_WARNINGS`` in this process (the command line's: importing catdog_pl changes no filter)."""
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def main(args: ArgsType = None) -> CatDogCLI | None:
    """Run the CLI on ``args`` (``sys.argv[1:]`` when ``None``); problems with the user's files exit with one line."""
    argv = sys.argv[1:] if args is None else list(args)
    prepare_process()  # malloc thresholds, denormals, NVML probe: before any work (catdog_pl.process)
    quiet_known_warnings()
    try:
        if argv[:1] == ["prepare"]:
            from catdog_pl.prepare import main as prepare_main

            prepare_main(argv[1:])
            return None
        if argv[:1] == ["report"]:
            from catdog_pl.report import main as report_main

            report_main(argv[1:])
            return None
        if argv[:1] in (["export"], ["serve"]):  # catdog_pl.export.main, catdog_pl.serve.main
            __import__(f"catdog_pl.{argv[0]}", fromlist=["main"]).main(argv[1:])
            return None
        return CatDogCLI(
            CatDogClassifier,
            CatDogDataModule,
            seed_everything_default=SEED,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": DESCRIPTION},
            args=args,
        )
    except CatDogError as error:
        print(f"catdog_pl: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
