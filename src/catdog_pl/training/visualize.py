"""What the model learned, in TensorBoard: augmented samples, confusion matrix, PR curve and the worst mistakes.

:class:`RunVisualizer` adds, once per epoch and never per step: at the first training batch a grid of augmented
images with their labels (what shear, zoom and flip do); at each validation end a confusion-matrix image (and its
counts as text), a PR curve for a binary model, and the ``hp/*`` metrics of the HPARAMS tab; at test end a gallery
of the worst mistakes (highest loss) with true and predicted label, the reliability diagram, and the per-class
table. The pictures are
:mod:`catdog_pl.evaluation.pictures`'s, the same ones ``report`` saves as PNGs.

Under DDP every process reaches the same collectives whatever its shard held (files skipped mid-epoch make shards
of unequal size, even empty ones): the shards are gathered as Python objects, then rank 0 draws.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from catdog_pl.evaluation.metrics import confusion_counts, worst_mistakes
from catdog_pl.evaluation.pictures import (
    captioned_grid,
    confusion_image,
    counts_markdown,
    mistake_caption,
    reliability_image,
    to_uint8_images,
)
from catdog_pl.training.shards import gather_shards

HP_METRICS = ("hp/val_acc", "hp/val_auroc", "hp/val_loss")


class RunVisualizer(Callback):
    """TensorBoard pictures of a run (see the module docstring). Does nothing without a TensorBoardLogger.

    Args:
        num_images: augmented training images shown at fit start.
        num_mistakes: worst test mistakes shown at test end.
    """

    def __init__(self, num_images: int = 32, num_mistakes: int = 16) -> None:
        self.num_images = num_images
        self.num_mistakes = num_mistakes
        self._val: list[tuple[torch.Tensor, ...]] = []
        self._worst: tuple[torch.Tensor, ...] | None = None

    @staticmethod
    def _writer(trainer: Trainer) -> TensorBoardLogger | None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger
        return None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = self._writer(trainer)
        if logger is not None and trainer.global_step == 0:
            params = dict(pl_module.hparams)
            if trainer.datamodule is not None:
                params.update({f"data/{k}": v for k, v in trainer.datamodule.hparams.items()})
            logger.log_hyperparams(params, dict.fromkeys(HP_METRICS, 0.0))  # the HPARAMS tab's columns

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != 0 or batch_idx != 0:  # first the cheap test: this hook runs every batch
            return
        logger = self._writer(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        images, targets = batch[0][: self.num_images], batch[1][: self.num_images]
        labels = pl_module.classes.labels
        grid = captioned_grid(to_uint8_images(images), [labels[int(t)] for t in targets])
        logger.experiment.add_image("train/augmented_batch", grid, 0, dataformats="HWC")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is not None and not trainer.sanity_checking:
            self._val.append((outputs["probs"].detach(), outputs["predicted"].detach(), outputs["targets"].detach()))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = self._writer(trainer)
        collected, self._val = self._val, []
        if logger is None or trainer.sanity_checking:  # the same answer on every process
            return
        classes = pl_module.classes
        if collected:
            probs, predicted, targets = (torch.cat(parts) for parts in zip(*collected, strict=True))
        else:  # this process's shard had no readable image: it still takes part in the gathering
            probs = torch.empty(0, len(classes.names))
            predicted = targets = torch.empty(0, dtype=torch.long)
        probs, predicted, targets = gather_shards(trainer, (probs.float(), predicted, targets))  # the whole set
        if not trainer.is_global_zero or len(targets) == 0:
            return
        step = trainer.global_step  # the x axis of Lightning's scalars
        counts = confusion_counts(predicted, targets, len(classes.names))
        writer = logger.experiment
        title = f"epoch {trainer.current_epoch}: {len(targets)} validation images"
        writer.add_image(
            "val/confusion_matrix", confusion_image(counts, classes.labels, title), step, dataformats="HWC"
        )
        writer.add_text("val/confusion_matrix_counts", counts_markdown(counts, classes.labels), step)
        if classes.binary:
            writer.add_pr_curve("val/pr_curve", targets.int(), probs[:, 1], step)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The module has logged this epoch's val/* by now: copy them under hp/* for the HPARAMS tab.
        logger = self._writer(trainer)
        metrics = trainer.callback_metrics
        if logger is None or trainer.sanity_checking or not trainer.is_global_zero or "val/acc" not in metrics:
            return
        for name in HP_METRICS:
            logger.experiment.add_scalar(name, float(metrics[name[3:].replace("_", "/", 1)]), trainer.global_step)

    def _keep_worst(self, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        keep = worst_mistakes(parts[1], parts[2], parts[3], self.num_mistakes)
        return tuple(part[keep] for part in parts)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is None or self._writer(trainer) is None:
            return
        candidate = (
            batch[0].detach().cpu(),
            outputs["probs"].detach().float().cpu(),
            outputs["predicted"].cpu(),
            outputs["targets"].cpu(),
        )
        if self._worst is not None:
            candidate = tuple(torch.cat([a, b]) for a, b in zip(self._worst, candidate, strict=True))
        self._worst = self._keep_worst(candidate)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger, worst, self._worst = self._writer(trainer), self._worst, None
        if logger is None:
            return
        classes = pl_module.classes
        if worst is None:  # this process's shard had no readable image
            side = int(pl_module.hparams.image_size)
            empty = torch.empty(0, dtype=torch.long)
            worst = (torch.empty(0, 3, side, side), torch.empty(0, len(classes.names)), empty, empty)
        worst = self._keep_worst(gather_shards(trainer, worst))  # the worst of all shards
        if not trainer.is_global_zero:
            return
        writer = logger.experiment
        summary = getattr(pl_module, "test_summary", None)
        if summary is not None:
            title = f"{summary.total} test images"
            writer.add_image("test/reliability", reliability_image(summary.reliability(), summary.ece, title), 0,
                             dataformats="HWC")  # fmt: skip
            writer.add_image("test/confusion_matrix", confusion_image(summary.counts, classes.labels, title), 0,
                             dataformats="HWC")  # fmt: skip
            writer.add_text("test/per_class", "```\n" + summary.report() + "\n```", 0)
        if len(worst[0]) == 0:
            return
        images, probs, predicted, targets = worst
        captions = [
            mistake_caption(p, int(t), int(q), classes.labels)
            for p, q, t in zip(probs, predicted, targets, strict=True)
        ]
        grid = captioned_grid(to_uint8_images(images), captions)
        writer.add_image("test/worst_mistakes", grid, 0, dataformats="HWC")
