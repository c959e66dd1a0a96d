"""The figures of one evaluation, computed once from a confusion matrix and calibration bins, and every way they are
shown: the scalars logged to TensorBoard, the terminal report of ``test``, and the JSON and CSV in the run folder."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import torch

from catdog_pl.evaluation.intervals import wilson_interval


def expected_calibration_error(counts: torch.Tensor, confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """The bins' |accuracy - confidence| weighted by their share of the images (bins of images, summed confidence
    and summed correctness, as ``metrics.CalibrationBins`` keeps them)."""
    return float((correct - confidence).abs().sum() / counts.sum().clamp_min(1))


@dataclass
class Summary:
    """An evaluation's figures. ``counts[true, predicted]``; ``bins`` are the reliability diagram's
    ``(count, mean confidence, accuracy)`` per confidence bin."""

    labels: list[str]
    counts: torch.Tensor
    loss: float
    auroc: float | None
    top5: float | None
    bin_counts: torch.Tensor
    bin_confidence: torch.Tensor
    bin_correct: torch.Tensor
    binary: bool

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def correct(self) -> int:
        return int(self.counts.trace())

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.total, 1)

    @property
    def support(self) -> torch.Tensor:
        return self.counts.sum(1)

    @property
    def recall(self) -> torch.Tensor:
        return self.counts.diag() / self.counts.sum(1).clamp_min(1)

    @property
    def precision(self) -> torch.Tensor:
        return self.counts.diag() / self.counts.sum(0).clamp_min(1)

    @property
    def f1(self) -> torch.Tensor:
        p, r = self.precision, self.recall
        return torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-12), torch.zeros_like(p))

    @property
    def balanced_accuracy(self) -> float:
        """The mean of the classes' recalls (of the classes present)."""
        present = self.support > 0
        return float(self.recall[present].mean()) if present.any() else 0.0

    @property
    def macro_f1(self) -> float:
        present = self.support > 0
        return float(self.f1[present].mean()) if present.any() else 0.0

    @property
    def ece(self) -> float:
        """Expected calibration error: the bins' |accuracy - confidence| weighted by their share of the images."""
        return expected_calibration_error(self.bin_counts, self.bin_confidence, self.bin_correct)

    def reliability(self) -> list[tuple[float, float, int]]:
        """``(mean confidence, accuracy, count)`` of each non-empty bin."""
        rows = []
        for count, confidence, correct in zip(self.bin_counts, self.bin_confidence, self.bin_correct, strict=True):
            if count > 0:
                rows.append((float(confidence / count), float(correct / count), int(count)))
        return rows

    def confused_pairs(self, count: int = 5) -> list[tuple[str, str, int]]:
        """``(true, predicted, images)`` of the largest off-diagonal counts, largest first."""
        off = self.counts.clone()
        off.fill_diagonal_(0)
        values, order = torch.sort(off.flatten(), descending=True, stable=True)
        pairs = []
        for value, index in zip(values.tolist(), order.tolist(), strict=True):
            if value <= 0 or len(pairs) == count:
                break
            true, predicted = divmod(index, off.shape[1])
            pairs.append((self.labels[true], self.labels[predicted], int(value)))
        return pairs

    def scalars(self, stage: str) -> dict[str, float]:
        """What a stage logs: ``{stage}/acc``, ``/loss``, ``/f1`` (class 1's for a binary model, else macro),
        ``/macro_f1``, ``/balanced_acc``, ``/ece``, and ``/auroc`` and ``/top5`` where they apply."""
        f1 = float(self.f1[1]) if self.binary else self.macro_f1
        values = {
            "acc": self.accuracy,
            "loss": self.loss,
            "f1": f1,
            "macro_f1": self.macro_f1,
            "balanced_acc": self.balanced_accuracy,
            "ece": self.ece,
        }
        if self.auroc is not None:
            values["auroc"] = self.auroc
        if self.top5 is not None:
            values["top5"] = self.top5
        return {f"{stage}/{name}": float(value) for name, value in values.items()}

    def per_class(self) -> list[dict]:
        return [
            {"class": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for label, p, r, f, n in zip(self.labels, self.precision, self.recall, self.f1, self.support, strict=True)
        ]

    def to_dict(self, dataset: str = "") -> dict:
        low, high = wilson_interval(self.correct, self.total)
        return {
            "dataset": dataset,
            "n": self.total,
            "accuracy": self.accuracy,
            "accuracy_low95": low,
            "accuracy_high95": high,
            "top5": self.top5,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "auroc": self.auroc,
            "ece": self.ece,
            "loss": self.loss,
            "per_class": self.per_class(),
            "confused_pairs": [{"true": t, "predicted": p, "images": n} for t, p, n in self.confused_pairs(10)],
            "confusion_matrix": {"labels": self.labels, "counts": self.counts.tolist()},
            "reliability": [{"confidence": c, "accuracy": a, "images": n} for c, a, n in self.reliability()],
        }

    def report(self, limit: int = 30) -> str:
        """The terminal report of ``test``: the headline figures, the per-class table and the most confused pairs."""
        low, high = wilson_interval(self.correct, self.total)
        lines = [f"test accuracy {self.accuracy:.3f} ({low:.3f}-{high:.3f}, n={self.total})"]
        extra = [f"balanced accuracy {self.balanced_accuracy:.3f}", f"macro-F1 {self.macro_f1:.3f}"]
        if self.top5 is not None:
            extra.insert(0, f"top-5 {self.top5:.3f}")
        extra.append(f"ECE {self.ece:.3f}")
        lines.append(", ".join(extra))
        width = max(8, *(len(label) for label in self.labels[:limit]))
        lines.append(f"{'class':<{width}}  precision  recall     f1  support")
        for row in self.per_class()[:limit]:
            lines.append(
                f"{row['class']:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  "
                f"{row['support']:7d}"
            )
        if len(self.labels) > limit:
            lines.append(f"... and {len(self.labels) - limit} more classes in metrics.json")
        pairs = self.confused_pairs(5)
        if pairs:
            lines.append("most confused: " + "; ".join(f"{t} -> {p} ({n})" for t, p, n in pairs))
        return "\n".join(lines)

    def per_class_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["class", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(self.per_class())
        return out.getvalue()

    def to_json(self, dataset: str = "") -> str:
        return json.dumps(self.to_dict(dataset), indent=2)
