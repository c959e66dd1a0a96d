"""Accuracy with its 95 % interval (Wilson's score interval: right at small counts and at 0 or 1)."""

from __future__ import annotations

import math


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
