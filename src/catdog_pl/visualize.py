"""What the model learned, in TensorBoard: augmented samples, confusion matrix, PR curve and the worst mistakes.

:class:`RunVisualizer` adds, once per epoch and never per step: at the first training batch a grid of augmented
images with their labels (what shear, zoom and flip do); at each validation end a confusion-matrix image (and its
counts as text), a PR curve and the ``hp/*`` metrics of the HPARAMS tab; at test end a gallery of the worst
mistakes (highest loss) with true label, predicted label and probability. Images are drawn with PIL, which costs
milliseconds, so that training stays as fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from catdog_pl.prediction import label_of

HP_METRICS = ("hp/val_acc", "hp/val_auroc", "hp/val_loss")


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def to_uint8_image(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` floats in [0, 1] -> ``(B, H, W, 3)`` uint8."""
    return (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def captioned_grid(images: torch.Tensor, captions: Sequence[str], scale: int = 2, columns: int = 8) -> np.ndarray:
    """Tiles of ``images`` (upscaled ``scale`` times, nearest) with a caption under each; ``(H, W, 3)`` uint8."""
    pixels = to_uint8_image(images)
    font = _font(11)
    caption_lines = max(caption.count("\n") + 1 for caption in captions) if captions else 1
    tiles = []
    for array, caption in zip(pixels, captions, strict=True):
        img = Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale), Image.Resampling.NEAREST)
        tile = Image.new("RGB", (img.width, img.height + 14 * caption_lines + 4), "white")
        tile.paste(img, (0, 0))
        ImageDraw.Draw(tile).multiline_text((3, img.height + 2), caption, fill="black", font=font, spacing=2)
        tiles.append(torch.from_numpy(np.array(tile)).permute(2, 0, 1))
    grid = make_grid(torch.stack(tiles), nrow=min(columns, len(tiles)), padding=4, pad_value=200)
    return grid.permute(1, 2, 0).numpy()


def confusion_image(counts: np.ndarray, class_names: Sequence[str], title: str = "") -> np.ndarray:
    """A 2x2 confusion matrix (rows: true class, columns: predicted) drawn as a heat map with counts."""
    cell, margin = 90, 110
    img = Image.new("RGB", (margin + 2 * cell + 10, margin + 2 * cell + 10), "white")
    draw, font = ImageDraw.Draw(img), _font(13)
    peak = max(int(counts.max()), 1)
    for true in range(2):
        for pred in range(2):
            value = int(counts[true, pred])
            shade = int(255 - 180 * value / peak)
            colour = (shade, shade, 255) if true == pred else (255, shade, shade)
            x0, y0 = margin + pred * cell, margin + true * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=colour, outline=(120, 120, 120))
            draw.text((x0 + cell // 2, y0 + cell // 2), str(value), fill="black", font=_font(18), anchor="mm")
    for i, name in enumerate(class_names):
        draw.text((margin + i * cell + cell // 2, margin - 8), label_of(name), fill="black", font=font, anchor="ms")
        draw.text((margin - 8, margin + i * cell + cell // 2), label_of(name), fill="black", font=font, anchor="rm")
    draw.text((margin + cell, margin - 30), "predicted", fill="black", font=font, anchor="ms")
    draw.text((8, margin + cell), "true", fill="black", font=font, anchor="lm")
    draw.text((8, 8), title, fill="black", font=font)
    return np.asarray(img)


def confusion_counts(probs: torch.Tensor, targets: torch.Tensor, threshold: float) -> np.ndarray:
    """``counts[true, predicted]`` for binary labels."""
    predicted = (probs >= threshold).long()
    counts = torch.zeros(2, 2, dtype=torch.long)
    counts.index_put_((targets.long().cpu(), predicted.cpu()), torch.ones_like(predicted.cpu()), accumulate=True)
    return counts.numpy()


def counts_markdown(counts: np.ndarray, class_names: Sequence[str]) -> str:
    labels = [label_of(name) for name in class_names]
    rows = [f"| true \\\\ predicted | {labels[0]} | {labels[1]} |", "| --- | --- | --- |"]
    rows += [f"| {labels[i]} | {counts[i, 0]} | {counts[i, 1]} |" for i in range(2)]
    return "\n".join(rows)


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
    def _writer(trainer: Trainer):
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
        grid = captioned_grid(images, [label_of(names[int(t)]) for t in targets])
        logger.experiment.add_image("train/augmented_batch", grid, 0, dataformats="HWC")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is not None and not trainer.sanity_checking:
            self._val.append((outputs["probs"].detach(), outputs["targets"].detach()))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = self._writer(trainer)
        collected, self._val = self._val, []
        if logger is None or trainer.sanity_checking or not collected:
            return
        probs = torch.cat([p for p, _ in collected]).float()
        targets = torch.cat([t for _, t in collected])
        if trainer.world_size > 1:  # every rank saw a shard; the pictures are of the whole set
            probs, targets = pl_module.all_gather(probs).flatten(), pl_module.all_gather(targets).flatten()
        if not trainer.is_global_zero:
            return
        probs, targets, step = probs.cpu(), targets.cpu(), trainer.global_step  # the x axis of Lightning's scalars
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

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is None:
            return
        images = batch[0].detach()
        probs, targets, losses = outputs["probs"].detach(), outputs["targets"].detach(), outputs["losses"].detach()
        wrong = (probs >= pl_module.hparams.threshold).long() != targets.long()
        candidate = (images[wrong].cpu(), probs[wrong].cpu(), targets[wrong].cpu(), losses[wrong].cpu())
        if self._worst is not None:
            candidate = tuple(torch.cat([a, b]) for a, b in zip(self._worst, candidate, strict=True))
        keep = torch.argsort(candidate[3].float(), descending=True)[: self.num_mistakes]
        self._worst = tuple(part[keep] for part in candidate)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger, worst, self._worst = self._writer(trainer), self._worst, None
        if logger is not None and trainer.world_size > 1:  # the worst of every rank's shard, then the worst of all
            shards: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(shards, worst)
            shards = [shard for shard in shards if shard is not None]
            worst = tuple(torch.cat(parts) for parts in zip(*shards, strict=True)) if shards else None
            if worst is not None:
                keep = torch.argsort(worst[3].float(), descending=True)[: self.num_mistakes]
                worst = tuple(part[keep] for part in worst)
        if logger is None or worst is None or not trainer.is_global_zero or len(worst[0]) == 0:
            return
        images, probs, targets, _ = worst
        names = pl_module.hparams.class_names
        threshold = pl_module.hparams.threshold
        captions = [
            f"true {label_of(names[int(t)])}\npred {label_of(names[int(p >= threshold)])}\np_dog {float(p):.2f}"
            for p, t in zip(probs, targets, strict=True)
        ]
        logger.experiment.add_image("test/worst_mistakes", captioned_grid(images, captions), 0, dataformats="HWC")
