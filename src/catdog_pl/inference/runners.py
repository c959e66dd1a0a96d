"""The network of a checkpoint run with PyTorch, for :class:`~catdog_pl.inference.predictor.Predictor`, ``export``
and ``serve`` (which imports this module, never the other way round).

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

from catdog_pl.core.labels import Classes
from catdog_pl.inference.card import ModelCard, read_test_record


def load_runner(ckpt_path: str | os.PathLike) -> tuple[TorchRunner, ModelCard]:
    """The one place where export and serve reach a checkpoint's PyTorch module: its runner on the CPU, in the
    precision the CLI would use, with the card of its checkpoint."""
    from catdog_pl.core.devices import bf16_is_fast
    from catdog_pl.inference.checkpoints import load_classifier

    model, hparams = load_classifier(ckpt_path)
    runner = TorchRunner(model, "cpu", bf16_is_fast("cpu"))
    return runner, card_of(hparams, checkpoint_metrics(ckpt_path), read_test_record(ckpt_path))


def card_of(hparams: dict, metrics: dict[str, float] | None = None, test: dict | None = None) -> ModelCard:
    """The card of a checkpoint's hyper-parameters; ``metrics`` are the checkpoint's (its last validation), ``test``
    its :func:`~catdog_pl.inference.card.read_test_record`, whose accuracy wins over any the checkpoint saved. Here
    rather than on :class:`ModelCard`, which the torch-free ONNX path imports."""
    metrics = metrics or {}
    classes = Classes.of(hparams)
    return ModelCard(
        class_names=classes.names,
        threshold=float(classes.threshold),
        image_size=int(hparams["image_size"]),
        display_labels=classes.labels,
        task="binary" if classes.binary else "multiclass",
        interpolation=str(hparams["interpolation"]),
        mean=tuple(float(v) for v in hparams["mean"]),
        std=tuple(float(v) for v in hparams["std"]),
        backbone=str(hparams.get("backbone", "keras_cnn")),
        test_acc=test["acc"] if test else metrics.get("test/acc"),
        val_acc=metrics.get("val/acc"),
        test=test,
    )


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
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S): the eval transform's ToDtype(scale=True)
        return self.model.probabilities(x).float()  # (N, C): normalised inside the model, as in training


class TorchRunner:
    """Probabilities from a checkpoint's network on ``device``, in bf16 autocast with ``bf16``: uint8 photos
    (:meth:`__call__`, what the ONNX graph takes) or [0, 1] float tensors (:meth:`probabilities`)."""

    runtime = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", bf16: bool = False) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.head = ProbabilityHead(self.model).eval()
        self.bf16 = bf16

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` on the CPU from a ``(B, 3, S, S)`` batch of [0, 1] pixels."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.probabilities(images.to(self.device)).float().cpu()

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, S, S, 3)`` -> float32 ``(N, C)``."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.head(torch.from_numpy(images).to(self.device)).float().cpu().numpy()

    def close(self) -> None:
        pass
