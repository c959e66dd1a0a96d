"""Figures of an evaluation: the confusion matrix and what follows from it (accuracy with its 95 % interval,
balanced accuracy, macro-F1, each class's precision, recall, F1 and support, the most confused pairs), top-5
accuracy, AUROC, the expected calibration error with its reliability bins, and the worst mistakes.

:class:`ClassificationMetrics` holds only fixed-size sum states (torchmetrics' confusion matrix and top-k accuracy,
a binned AUROC, binned calibration sums, a mean), so torchmetrics' own DDP sync adds them up whatever each
process's shard held, an empty one included.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MulticlassAUROC, MulticlassConfusionMatrix

from catdog_pl.core.labels import Classes
from catdog_pl.evaluation.intervals import format_accuracy, wilson_interval
from catdog_pl.evaluation.summary import Summary, expected_calibration_error

__all__ = [
    "ClassificationMetrics",
    "confusion_counts",
    "format_accuracy",
    "image_losses",
    "wilson_interval",
    "worst_mistakes",
]


def confusion_counts(predicted: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``counts[true, predicted]``, a ``(C, C)`` long tensor, from class indices."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long)
    predicted = predicted.detach().long().cpu()
    counts.index_put_((targets.detach().long().cpu(), predicted), torch.ones_like(predicted), accumulate=True)
    return counts


def image_losses(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image from its ``(N, C)`` probabilities."""
    p_true = probs.float().gather(1, targets.long().view(-1, 1)).squeeze(1)
    return -torch.log(p_true.clamp_min(1e-7))


def worst_mistakes(probs: torch.Tensor, predicted: torch.Tensor, targets: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the misclassified images, highest loss first, at most ``count``."""
    wrong = torch.nonzero(predicted.long() != targets.long()).flatten()
    order = torch.argsort(image_losses(probs[wrong], targets[wrong]), descending=True, stable=True)
    return wrong[order[:count]]


class CalibrationBins(Metric):
    """Images, summed confidence and summed correctness per confidence bin (the confidence of an image is the
    probability of its predicted label): the expected calibration error and the reliability diagram.

    torchmetrics' ``MulticlassCalibrationError`` keeps every image's confidence in a list state; these are sums of a
    fixed size, which DDP adds up whatever each process's shard held."""

    full_state_update = False

    def __init__(self, num_bins: int = 15) -> None:
        super().__init__(sync_on_compute=True)
        self.num_bins = num_bins
        for name in ("counts", "confidence", "correct"):
            self.add_state(name, torch.zeros(num_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, predicted: torch.Tensor, targets: torch.Tensor) -> None:
        confidence = probs.float().gather(1, predicted.long().view(-1, 1)).squeeze(1)
        bins = (confidence * self.num_bins).long().clamp(0, self.num_bins - 1)
        self.counts += torch.bincount(bins, minlength=self.num_bins).double()
        self.confidence += torch.bincount(bins, weights=confidence.double(), minlength=self.num_bins)
        correct = (predicted.long() == targets.long()).double()
        self.correct += torch.bincount(bins, weights=correct, minlength=self.num_bins)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.counts, self.confidence, self.correct

    def compute_ece(self) -> float:
        """The expected calibration error of the images so far (every process's under DDP)."""
        return expected_calibration_error(*self.compute())


class ClassificationMetrics(torch.nn.Module):
    """A stage's metrics, updated with each batch and computed once an epoch into a :class:`Summary` (synced over
    DDP by torchmetrics). AUROC is binned at 200 thresholds, and top-5 accuracy is kept above 5 classes."""

    def __init__(self, classes: Classes) -> None:
        super().__init__()
        self.classes = classes
        count = len(classes.names)
        options = {"validate_args": False}
        self.confusion = MulticlassConfusionMatrix(count, **options)
        self.top5 = MulticlassAccuracy(count, top_k=5, average="micro", **options) if count > 5 else None
        if classes.binary:
            self.auroc = BinaryAUROC(thresholds=200, **options)
        else:
            self.auroc = MulticlassAUROC(count, thresholds=200, **options)
        self.calibration = CalibrationBins()
        self.loss = MeanMetric()

    def update(self, probs: torch.Tensor, targets: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Add a batch: ``(B, C)`` probabilities, class indices, per-image losses; returns the predicted classes."""
        probs, targets = probs.detach().float(), targets.detach().long()
        predicted = self.classes.decide(probs)
        self.confusion.update(predicted, targets)
        if self.top5 is not None:
            self.top5.update(probs, targets)
        self.auroc.update(probs[:, 1] if self.classes.binary else probs, targets)
        self.calibration.update(probs, predicted, targets)
        self.loss.update(losses.detach().float())
        return predicted

    def compute(self) -> Summary | None:
        """The summary of every process's images, or ``None`` when there were none. A collective under DDP."""
        with warnings.catch_warnings():  # a process whose shard held no readable image updated nothing: expected
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method")
            counts = self.confusion.compute().long().cpu()
            bins = [part.cpu() for part in self.calibration.compute()]
            loss = float(self.loss.compute())
            auroc = float(self.auroc.compute())
            top5 = float(self.top5.compute()) if self.top5 is not None else None
        if int(counts.sum()) == 0:
            return None
        return Summary(list(self.classes.labels), counts, loss, auroc, top5, *bins, binary=self.classes.binary)

    def reset(self) -> None:
        for metric in (self.confusion, self.top5, self.auroc, self.calibration, self.loss):
            if metric is not None:
                metric.reset()
