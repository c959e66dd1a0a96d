"""``predict``'s CSV under Lightning (the PyTorch runtime, DDP included): a prediction writer that gathers every
process's rows under DDP and writes them once, in input order, with the Python API's rows and table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from catdog_pl.core.labels import Classes, check_threshold
from catdog_pl.inference.rows import Prediction, collect, make_predictions, summary, write_csv


class PredictionWriter(BasePredictionWriter):
    """Write every prediction to a CSV (``path,label,probability,p_<label>...,error``), once and in input order, also
    under DDP.

    Args:
        output: CSV path; by default ``predictions.csv`` in the run folder (``trainer.log_dir``).
        threshold: for a binary model, the probability of class 1 at or above which the label is class 1; by
            default the model's.
        show: rows printed on the terminal.
        top_k: the CSV keeps each photo's k most probable classes instead of a column per class; by default only
            above 20 classes (then 5).
    """

    def __init__(
        self, output: str | None = None, threshold: float | None = None, show: int = 20, top_k: int | None = None
    ) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.threshold = threshold if threshold is None else check_threshold(threshold)
        self.show = show
        self.top_k = top_k
        self.rows: list[Prediction] = []
        self.path: Path | None = None
        self.threshold_used: float | None = None
        self.class_names: list[str] = []
        self.classes: Classes | None = None
        self._default_output = "predictions.csv"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # trainer.log_dir is a collective under DDP: every process asks here, at the same point, and only rank 0
        # writes at the end.
        log_dir = trainer.log_dir
        self._default_output = os.path.join(log_dir or ".", "predictions.csv")

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence, batch_indices: Sequence
    ) -> None:
        probabilities: dict[int, list[float]] = {}
        errors: dict[int, str] = {}
        for batch in predictions:
            collect(probabilities, errors, batch["index"], batch["probability"], batch["error"])
        if trainer.world_size > 1:  # every rank predicted a shard: gather them, each index kept once
            gathered: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (probabilities, errors))
            for shard_probabilities, shard_errors in gathered:
                probabilities.update(shard_probabilities)
                errors.update(shard_errors)
        dataset = trainer.predict_dataloaders.dataset
        classes = Classes.of(dict(pl_module.hparams), self.threshold)
        self.class_names = list(classes.names)
        self.rows = make_predictions(dataset, probabilities, errors, classes)
        self.threshold_used = classes.threshold if classes.binary else None
        self.classes = classes
        if trainer.is_global_zero:
            self.path = write_csv(self.rows, self.output or self._default_output, classes, self.top_k)

    def summary(self) -> str:
        """The terminal report: a short table, then one line with the counts and the CSV's path."""
        return summary(self.rows, self.show, self.classes, self.path)
