"""Temperature scaling (Guo et al., 2017): one scalar ``T`` that divides the logits, fitted by minimising the
negative log-likelihood of held-out photos. It moves the probabilities towards or away from certainty and never
changes which class is most probable."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from catdog_pl.evaluation.metrics import CalibrationBins

#: The temperatures a fit may return: outside, the validation photos were too few or already all right or all wrong.
TEMPERATURE_RANGE = (0.05, 20.0)


def logit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``targets`` under one-logit ``(N,)`` (sigmoid) or ``(N, C)`` (softmax) logits."""
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, steps: int = 50) -> float:
    """The temperature that minimises the negative log-likelihood of ``targets`` (L-BFGS on ``log T``), clamped to
    :data:`TEMPERATURE_RANGE`; 1.0 for no photos."""
    if logits.numel() == 0:
        return 1.0
    logits, targets = logits.detach().double(), targets.detach().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = logit_loss(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    low, high = TEMPERATURE_RANGE
    return float(log_t.detach().exp().clamp(low, high))


def calibration_error(probs: torch.Tensor, predicted: torch.Tensor, targets: torch.Tensor) -> float:
    """Expected calibration error of ``(N, C)`` probabilities with the labels ``predicted`` from them (15 bins, the
    same bins as ``test``'s)."""
    bins = CalibrationBins()
    bins.update(probs, predicted, targets)
    return bins.compute_ece()
