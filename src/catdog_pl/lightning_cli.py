"""``fit``, ``validate``, ``test`` and ``predict``: a ``LightningCLI`` over ``CatDogModule`` and ``CatDogDataModule``,
with the data following the model's image size and checkpoints checked before Lightning reads them."""

from __future__ import annotations

import inspect
import json
import os
from itertools import chain, count
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from catdog_pl.compat.lightning import CheckpointBeforeLightning
from catdog_pl.core.csvfile import write_text_atomic
from catdog_pl.core.devices import default_precision
from catdog_pl.core.errors import CheckpointError
from catdog_pl.data.datamodule import CatDogDataModule
from catdog_pl.data.folders import is_image_file
from catdog_pl.data.layouts import read_layout
from catdog_pl.evaluation.intervals import wilson_interval
from catdog_pl.inference.card import write_test_record
from catdog_pl.inference.checkpoints import check_checkpoint, describe, is_url
from catdog_pl.inference.writer import PredictionWriter
from catdog_pl.models.preprocessing import resolve_preprocessing
from catdog_pl.training.checkpointing import use_atomic_checkpoint_io
from catdog_pl.training.module import CatDogModule
from catdog_pl.training.watchdog import PeerWatchdog

SEED = 42
#: Model options that belong to an evaluation, not to the weights: given on the command line or in a config, they
#: win over the checkpoint's.
EVALUATION_OPTIONS = ("tta",)
#: Model options that describe the weights: a configuration that asks for other values than the checkpoint's is
#: refused rather than silently overridden.
WEIGHT_OPTIONS = ("backbone", "image_size")
#: Data options that decide which photos are held out: a checkpoint's test and validate take the checkpoint's.
SPLIT_OPTIONS = ("val_split", "test_split", "seed")
#: The model's class names by default, replaced by the data's when a new model is fitted.
DEFAULT_CLASSES = tuple(inspect.signature(CatDogModule).parameters["class_names"].default)


def _image_size(backbone: str, image_size: int | None) -> int:
    return resolve_preprocessing(backbone, image_size).image_size


def _interpolation(backbone: str, interpolation: str | None) -> str:
    return resolve_preprocessing(backbone, interpolation=interpolation).interpolation


class SaveConfigWithRun(SaveConfigCallback):
    """Save ``config.yaml`` into the run folder; without a logger there is no run folder, and nothing is saved
    (rather than a ``config.yaml`` dropped into the working folder)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.logger is not None:
            super().setup(trainer, pl_module, stage)


class CatDogCLI(CheckpointBeforeLightning, LightningCLI):
    """``fit``, ``validate``, ``test`` and ``predict``, with the data following the model's image size."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model is the source of truth: its backbone's preprocessing (or a checkpoint's) reaches the data.
        parser.link_arguments(("model.backbone", "model.image_size"), "data.image_size", compute_fn=_image_size)
        parser.link_arguments(
            ("model.backbone", "model.interpolation"), "data.interpolation", compute_fn=_interpolation
        )
        # predict writes its CSV through this callback (--prediction.output); other subcommands leave it idle.
        parser.add_lightning_class_args(PredictionWriter, "prediction")

    def check_ckpt_path(self) -> None:
        # Refuse a file that is not a catdog_pl checkpoint, or not of the configured network, with one line, before
        # Lightning reads its hyper-parameters into the configuration (where the checkpoint's win).
        self._asked: dict = {}
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        # Every checkpoint Lightning reads (fit's resume, test's weights) is read as data: no code runs.
        if config.get("weights_only") is False:
            raise CheckpointError(
                "--weights_only false: catdog_pl reads checkpoints as data only (weights_only=true), so that a "
                "checkpoint cannot run code; leave the option out"
            )
        if "weights_only" in config:
            config.weights_only = True
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and (is_url(ckpt_path) or str(ckpt_path) == "registry" or str(ckpt_path).startswith("registry:")):
            raise CheckpointError(
                f"--ckpt_path {ckpt_path}: checkpoints are read from local files only (Lightning would fetch this one "
                "and unpickle it unchecked); download it from a source you trust and pass the local path"
            )
        if not ckpt_path or (subcommand == "fit" and not os.path.exists(ckpt_path)):
            return
        checkpoint = check_checkpoint(ckpt_path)
        saved = checkpoint["hyper_parameters"]
        model = config.model
        defaults = {name: p.default for name, p in inspect.signature(CatDogModule).parameters.items()}
        asked = {
            key: model.get(key) for key in (*WEIGHT_OPTIONS, *EVALUATION_OPTIONS) if model.get(key) != defaults.get(key)
        }
        for key in WEIGHT_OPTIONS:
            if key in asked and asked[key] != saved.get(key, defaults.get(key)):
                raise CheckpointError(
                    f"{ckpt_path}: this checkpoint holds {describe(saved)}, but the configuration asks for "
                    f"model.{key}={asked[key]}; leave the model options out (the checkpoint carries them) or pass "
                    "a checkpoint of that model"
                )
        self._asked = asked
        # validate and test repeat the split the checkpoint was trained with: its held-out photos, never training
        # photos, whatever the configuration's val_split, test_split and seed.
        saved_data = checkpoint.get("datamodule_hyper_parameters") or {}
        if subcommand in ("validate", "test"):
            data = self.config[subcommand].data
            for key in SPLIT_OPTIONS:
                if key in saved_data and data.get(key) != saved_data[key]:
                    data[key] = saved_data[key]

    def after_ckpt_path(self) -> None:
        # Evaluation options given on the command line or in a config win over the checkpoint's.
        subcommand = self.config.get("subcommand")
        for key in EVALUATION_OPTIONS:
            if key in self._asked:
                self.config[subcommand].model[key] = self._asked[key]

    def instantiate_trainer(self, **kwargs: object) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoint_io(trainer.strategy)  # a save killed midway leaves the previous checkpoint in place
        trainer.callbacks.append(PeerWatchdog())  # under DDP, a dead process stops the others with a message
        if self.subcommand == "fit":
            add_metrics_csv(trainer)
        return trainer

    def after_test(self) -> None:
        # trainer.log_dir is a collective under DDP: every process asks, only rank 0 writes.
        log_dir = self.trainer.log_dir if self.trainer.logger is not None else None
        summary = getattr(self.model, "test_summary", None)
        if summary is None or not self.trainer.is_global_zero:
            return
        print(summary.report(), flush=True)
        source = self.datamodule.layout.sources["test"]
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path and os.path.isfile(ckpt_path):
            # Beside the checkpoint, where export, serve and its page find it: the accuracy a user can be shown.
            low, high = wilson_interval(summary.correct, summary.total)
            data_dir = Path(self.datamodule.data_dir)
            record = write_test_record(
                ckpt_path, summary.accuracy, low, high, summary.total, f"{data_dir.name} ({source.rstrip('/')})",
                data_dir=str(data_dir.resolve()), tta=bool(self.model.hparams.get("tta")),
                threshold=float(self.model.classes.threshold),
            )  # fmt: skip
            print(f"test accuracy recorded -> {record}", flush=True)
        if log_dir:
            dataset = f"{self.datamodule.data_dir} ({source})"
            figures = summary.to_dict(dataset)
            unscaled = self.trainer.callback_metrics.get("test/ece_unscaled")
            figures["temperature"] = float(self.model.temperature)
            figures["ece_unscaled"] = figures["ece"] if unscaled is None else float(unscaled)
            json_path = write_text_atomic(Path(log_dir) / "metrics.json", json.dumps(figures, indent=2))
            csv_path = write_text_atomic(Path(log_dir) / "per_class.csv", summary.per_class_csv())
            print(f"figures -> {json_path}, {csv_path}", flush=True)

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
        if config.trainer.logger is False and config.trainer.callbacks:
            # Lightning refuses a LearningRateMonitor without a logger; with no logger there is nothing to log to.
            config.trainer.callbacks = [
                callback
                for callback in config.trainer.callbacks
                if not str(getattr(callback, "class_path", "")).endswith("LearningRateMonitor")
            ]
        if self.subcommand == "fit" and config.get("ckpt_path") and os.path.isfile(config.ckpt_path):
            continue_run_folder(config.trainer, config.ckpt_path)
        elif self.subcommand == "fit" and tuple(config.model.class_names) == DEFAULT_CLASSES:
            # A new model's classes are the data's: the head's size depends on them, before the data's setup.
            config.model.class_names = tuple(data_classes(config.data))


def data_classes(data: Namespace) -> list[str]:
    """The class names of the data a configuration names (its layout read as ``setup`` will read it)."""
    return read_layout(data.data_dir, is_image_file, data.val_split, data.test_split, data.seed).class_names


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


def add_metrics_csv(trainer: Trainer) -> None:
    """A fit logging to TensorBoard also writes its figures per epoch as a table, ``metrics/metrics.csv`` in the run
    folder (Lightning's ``CSVLogger``), for ``report`` and for anyone who would rather open a spreadsheet.

    Only where TensorBoard is the first logger, on a local disk, and no ``CSVLogger`` is configured. The CSV gets a
    sub-folder of its own: a ``CSVLogger`` given the run folder itself would pick a ``version_N`` of its own, and one
    reopening a folder deletes the ``metrics.csv`` there, so a resumed fit, which continues the run folder, writes
    ``metrics.1/`` beside the first fit's ``metrics/`` and ``report`` reads them in order.
    """
    loggers = trainer.loggers
    if not loggers or not isinstance(loggers[0], TensorBoardLogger) or any(isinstance(x, CSVLogger) for x in loggers):
        return
    if "://" in loggers[0].log_dir:  # a remote run folder (s3://...): TensorBoard alone
        return
    run = Path(loggers[0].log_dir)
    names = chain(["metrics"], (f"metrics.{i}" for i in count(1)))
    version = next(name for name in names if not (run / name).exists())
    trainer.loggers = [*loggers, CSVLogger(run, name="", version=version)]


def run_lightning_cli(args: ArgsType, description: str) -> CatDogCLI:
    return CatDogCLI(
        CatDogModule,
        CatDogDataModule,
        seed_everything_default=SEED,
        save_config_callback=SaveConfigWithRun,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": description},
        args=args,
    )


def lr_find_main(args: list[str]) -> None:
    """``python -m catdog_pl lr_find --config X.yaml [fit's options]``: Lightning's ``Tuner.lr_find`` over the model
    and data a fit would build (a short run from ``min_lr`` to ``max_lr``, as fastai's ``lr_find``); prints the
    suggested rate and saves the plot as ``lr_find.png`` in the run folder."""
    from lightning.pytorch.tuner import Tuner

    cli = CatDogCLI(
        CatDogModule,
        CatDogDataModule,
        seed_everything_default=SEED,
        save_config_callback=None,
        parser_kwargs={"description": lr_find_main.__doc__},
        args=args,
        run=False,
    )
    finder = Tuner(cli.trainer).lr_find(cli.model, datamodule=cli.datamodule, update_attr=False)
    if finder is None or not cli.trainer.is_global_zero:
        return
    suggestion = finder.suggestion()
    folder = Path(cli.trainer.log_dir or ".")
    folder.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=True)
    figure.savefig(folder / "lr_find.png", dpi=100)
    shown = "none (the loss never fell)" if suggestion is None else f"{suggestion:.2e}"
    print(f"lr_find: suggested --model.lr {shown}; plot -> {folder / 'lr_find.png'}", flush=True)
