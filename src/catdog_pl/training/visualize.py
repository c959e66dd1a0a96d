"""What the model learned, in TensorBoard: augmented samples, confusion matrix, PR curve and the worst mistakes.

:class:`RunVisualizer` adds, once per epoch and never per step: at the first training batch a grid of augmented
images with their labels (what shear, zoom and flip do); at each validation end a confusion-matrix image (and its
counts as text), a PR curve and the ``hp/*`` metrics of the HPARAMS tab; at test end a gallery of the worst
mistakes (highest loss) with true label, predicted label and probability. The pictures are
:mod:`catdog_pl.evaluation.pictures`'s, the same ones ``report`` saves as PNGs.

Under DDP every process reaches the same collectives whatever its shard held (files skipped mid-epoch make shards
of unequal size, even empty ones): the shards are gathered as Python objects, then rank 0 draws.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from catdog_pl.core.labels import label_of
from catdog_pl.evaluation.metrics import confusion_counts, worst_mistakes
from catdog_pl.evaluation.pictures import (
    captioned_grid,
    confusion_image,
    counts_markdown,
    mistake_caption,
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
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
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
        names = pl_module.hparams.class_names
        grid = captioned_grid(to_uint8_images(images), [label_of(names[int(t)]) for t in targets])
        logger.experiment.add_image("train/augmented_batch", grid, 0, dataformats="HWC")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is not None and not trainer.sanity_checking:
            self._val.append((outputs["probs"].detach(), outputs["targets"].detach()))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = self._writer(trainer)
        collected, self._val = self._val, []
        if logger is None or trainer.sanity_checking:  # the same answer on every process
            return
        probs = torch.cat([p for p, _ in collected]).float() if collected else torch.empty(0)
        targets = torch.cat([t for _, t in collected]) if collected else torch.empty(0, dtype=torch.long)
        probs, targets = gather_shards(trainer, (probs, targets))  # the pictures are of the whole set
        if not trainer.is_global_zero or len(targets) == 0:
            return
        step = trainer.global_step  # the x axis of Lightning's scalars
        names, threshold = pl_module.hparams.class_names, pl_module.hparams.threshold
        counts = confusion_counts(probs, targets, threshold)
        writer = logger.experiment
        title = f"epoch {trainer.current_epoch}: {len(targets)} validation images"
        writer.add_image("val/confusion_matrix", confusion_image(counts, names, title), step, dataformats="HWC")
        writer.add_text("val/confusion_matrix_counts", counts_markdown(counts, names), step)
        writer.add_pr_curve("val/pr_curve", targets.int(), probs, step)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The module has logged this epoch's val/* by now: copy them under hp/* for the HPARAMS tab.
        logger = self._writer(trainer)
        metrics = trainer.callback_metrics
        if logger is None or trainer.sanity_checking or not trainer.is_global_zero or "val/acc" not in metrics:
            return
        for name in HP_METRICS:
            logger.experiment.add_scalar(name, float(metrics[name[3:].replace("_", "/", 1)]), trainer.global_step)

    def _keep_worst(self, parts: tuple[torch.Tensor, ...], threshold: float) -> tuple[torch.Tensor, ...]:
        keep = worst_mistakes(parts[1], parts[2], threshold, self.num_mistakes)
        return tuple(part[keep] for part in parts)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is None or self._writer(trainer) is None:
            return
        candidate = (batch[0].detach().cpu(), outputs["probs"].detach().float().cpu(), outputs["targets"].cpu())
        if self._worst is not None:
            candidate = tuple(torch.cat([a, b]) for a, b in zip(self._worst, candidate, strict=True))
        self._worst = self._keep_worst(candidate, pl_module.hparams.threshold)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger, worst, self._worst = self._writer(trainer), self._worst, None
        if logger is None:
            return
        hp = pl_module.hparams
        if worst is None:  # this process's shard had no readable image
            side = int(hp.image_size)
            worst = (torch.empty(0, 3, side, side), torch.empty(0), torch.empty(0, dtype=torch.long))
        worst = self._keep_worst(gather_shards(trainer, worst), hp.threshold)  # the worst of all shards
        if not trainer.is_global_zero or len(worst[0]) == 0:
            return
        images, probs, targets = worst
        captions = [
            mistake_caption(float(p), int(t), hp.class_names, hp.threshold) for p, t in zip(probs, targets, strict=True)
        ]
        grid = captioned_grid(to_uint8_images(images), captions)
        logger.experiment.add_image("test/worst_mistakes", grid, 0, dataformats="HWC")
