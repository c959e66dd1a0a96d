"""Figures of an evaluation: confusion counts, accuracy with its 95 % interval, and the worst mistakes."""

from __future__ import annotations

import math

import torch


def confusion_counts(probs: torch.Tensor, targets: torch.Tensor, threshold: float) -> torch.Tensor:
    """``counts[true, predicted]`` for binary labels, a ``(2, 2)`` long tensor."""
    predicted = (probs.detach().cpu() >= threshold).long()
    counts = torch.zeros(2, 2, dtype=torch.long)
    counts.index_put_((targets.detach().long().cpu(), predicted), torch.ones_like(predicted), accumulate=True)
    return counts


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default): ``successes`` out of ``total``."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == total else min(1.0, centre + half)


def format_accuracy(correct: int, total: int) -> str:
    """``0.769 (0.742-0.794, n=1000)``: accuracy with its 95 % Wilson interval."""
    low, high = wilson_interval(correct, total)
    return f"{correct / max(total, 1):.3f} ({low:.3f}-{high:.3f}, n={total})"


def image_losses(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each image from its class-1 probability."""
    p_true = torch.where(targets.bool(), probs, 1 - probs).float()
    return -torch.log(p_true.clamp_min(1e-7))


def worst_mistakes(probs: torch.Tensor, targets: torch.Tensor, threshold: float, count: int) -> torch.Tensor:
    """Indices of the misclassified images, highest loss first, at most ``count``."""
    wrong = torch.nonzero((probs >= threshold).long() != targets.long()).flatten()
    order = torch.argsort(image_losses(probs[wrong], targets[wrong]), descending=True, stable=True)
    return wrong[order[:count]]
