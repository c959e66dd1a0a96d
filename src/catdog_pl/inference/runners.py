"""The network of a checkpoint as ``export`` and ``serve`` run it with PyTorch.

The recipe is the one ``predict`` follows: :func:`~catdog_pl.data.images.load_rgb` (JPEG draft to the smallest DCT
scale covering the input size, EXIF orientation, RGB), then :func:`~catdog_pl.data.images.squash` to ``S x S`` with the
model's resampling filter (:func:`~catdog_pl.data.images.prepare_image`). The rest (``/ 255``, then
``(x - mean) / std``, the network, the sigmoid, the mirror image with ``tta``) is :class:`ProbabilityHead`, which is
also what goes into the ONNX graph, so that PyTorch and onnxruntime run the same computation.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from catdog_pl.inference.card import ModelCard, read_test_record
from catdog_pl.inference.predictor import Predictor


def load_predictor(ckpt_path: str | os.PathLike) -> tuple[Predictor, ModelCard]:
    """The one place where export and serve reach the Python predictor (on the CPU, with its default precision),
    with the card of its checkpoint."""
    predictor = Predictor.from_checkpoint(ckpt_path, device="cpu")
    return predictor, ModelCard.of(predictor, checkpoint_metrics(ckpt_path), read_test_record(ckpt_path))


def checkpoint_metrics(ckpt_path: str | os.PathLike) -> dict[str, float]:
    """The metrics a checkpoint saved (``{"test/acc": 0.8, ...}``), or ``{}`` for one that saved none."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return {name: float(value) for name, value in (checkpoint.get("metrics") or {}).items()}


class ProbabilityHead(torch.nn.Module):
    """uint8 ``(N, S, S, 3)`` RGB -> float32 ``(N, C)`` probabilities (``[1 - p, p]`` for a binary model); ``model``
    is a :class:`~catdog_pl.models.classifier.Classifier` (or anything with its ``probabilities``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
        return self.model.probabilities(x).float()  # (N, C): normalised inside the model, as in training


class TorchRunner:
    """Probabilities from a checkpoint's network, with the predictor's precision (bf16 autocast where it is fast)."""

    def __init__(self, predictor: Predictor) -> None:
        self.head = ProbabilityHead(predictor.model).eval()
        self.bf16 = predictor.bf16

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.head(torch.from_numpy(images)).float().numpy()
