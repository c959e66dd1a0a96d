"""The ``LightningModule``: the original's loss, optimiser and metrics around ``SeedCNN``."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from catdog_pl.model import SeedCNN


def stage_metrics(stage: str, threshold: float = 0.5) -> MetricCollection:
    """The metrics logged for a stage once an epoch: ``{stage}/acc``, ``{stage}/auroc`` and ``{stage}/f1``."""
    return MetricCollection(
        {
            "acc": BinaryAccuracy(threshold, validate_args=False),
            "auroc": BinaryAUROC(validate_args=False),
            "f1": BinaryF1Score(threshold, validate_args=False),
        },
        prefix=f"{stage}/",
    )


class CatDogClassifier(LightningModule):
    """Binary cat/dog classifier: ``SeedCNN``, ``BCEWithLogitsLoss`` and Adam with Keras's defaults.

    Args:
        image_size: side of the square input images; the data module follows it.
        lr: Adam learning rate (Keras ``Adam()``: 1e-3).
        betas: Adam betas (Keras: 0.9, 0.999).
        eps: Adam epsilon (Keras: 1e-7; PyTorch's default is 1e-8).
        class_names: folder names of class 0 and class 1, read from the data when fitting and saved in the
            checkpoint, so that prediction labels images without the data.
        threshold: probability of class 1 above which an image is labelled class 1.
    """

    def __init__(
        self,
        image_size: int = 64,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        class_names: tuple[str, str] = ("cats", "dogs"),
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.save_hyperparameters()
        # channels_last: the CPU (oneDNN) and GPU (cuDNN) convolutions run 1.5-2.5x faster in NHWC.
        self.net = SeedCNN(image_size=image_size).to(memory_format=torch.channels_last)
        self.loss_fn = nn.BCEWithLogitsLoss(reduction="none")  # per image: the worst mistakes are the top losses
        self.train_metrics = stage_metrics("train", threshold)
        self.val_metrics = stage_metrics("val", threshold)
        self.test_metrics = stage_metrics("test", threshold)
        self._outputs: dict[str, list[tuple[torch.Tensor, ...]]] = {"train": [], "val": [], "test": []}
        self.example_input_array = torch.zeros(2, 3, image_size, image_size)

    def __setattr__(self, name: str, value: object) -> None:
        # The Trainer sets ``_current_fx_name`` (a hook's name, or None) twice around every hook it calls, ~35
        # times a batch; ``nn.Module.__setattr__``'s checks for parameters, modules and buffers cost ~0.5 %
        # of a CPU run. A string is none of those, so storing it directly is the same (Lightning's own
        # ``_ResultMetric`` skips the checks the same way).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of class 1 ("dogs"), shape ``(B,)``."""
        return self.net(x.contiguous(memory_format=torch.channels_last))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_classes = getattr(datamodule, "class_names", None)
        if stage == "fit" and data_classes and tuple(data_classes) != tuple(self.hparams.class_names):
            # The checkpoint must name the classes the weights were trained on.
            self.hparams.class_names = tuple(data_classes)
        elif data_classes and tuple(data_classes) != tuple(self.hparams.class_names):
            rank_zero_warn(
                f"the data's classes {list(data_classes)} differ from the model's {list(self.hparams.class_names)}"
            )

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self(images).float()
        losses = self.loss_fn(logits, targets.float())
        return losses, torch.sigmoid(logits), targets

    # Each step only keeps its per-image losses and probabilities; the loss and the metrics are logged once an
    # epoch from all of them (torchmetrics objects, synchronised under DDP). Logging in every step cost ~10 % of
    # the run here, in Lightning's per-call bookkeeping.

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if batch[0].numel() == 0:  # every file of this batch was unreadable (reported by the data module)
            return None
        losses, probs, targets = self._shared_step(batch)
        self._outputs["train"].append((losses.detach(), probs.detach(), targets))
        return losses.mean()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict | None:
        if batch[0].numel() == 0:
            return None
        losses, probs, targets = self._shared_step(batch)
        self._outputs["val"].append((losses, probs, targets))
        return {"probs": probs, "targets": targets}  # for the pictures of RunVisualizer

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict | None:
        if batch[0].numel() == 0:
            return None
        losses, probs, targets = self._shared_step(batch)
        self._outputs["test"].append((losses, probs, targets))
        return {"probs": probs, "targets": targets, "losses": losses}

    def _log_epoch(self, stage: str) -> None:
        outputs, self._outputs[stage] = self._outputs[stage], []
        if not outputs or self.trainer.sanity_checking:  # two batches of one class: no metric to speak of
            return
        losses, probs, targets = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probs, targets)
        # sync_dist: under DDP the loss is averaged over every process (the shards are of equal size).
        self.log(f"{stage}/loss", losses.mean(), prog_bar=stage != "test", sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor, list[str]], batch_idx: int) -> dict:
        """Probabilities of class 1 with each image's input index and read error (see ``PredictionSet``)."""
        images, indices, errors = batch
        return {"index": indices, "p_dog": torch.sigmoid(self(images).float()), "error": errors}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        # fused: one kernel for all parameters (2.6 ms -> 0.6 ms a step on 2 CPU cores; the default on the CPU is
        # a Python loop over the parameters). Same update rule.
        fused = all(p.device.type in ("cpu", "cuda") for p in self.parameters())
        return torch.optim.Adam(self.parameters(), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, fused=fused)
