"""The one switch between a checkpoint, run with PyTorch, and an exported ONNX file, run with onnxruntime. Torch is
imported only for a checkpoint, so a server of an ONNX file runs without it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from catdog_pl.inference.card import ModelCard
from catdog_pl.inference.onnx import OnnxRunner

if TYPE_CHECKING:
    from catdog_pl.inference.runners import TorchRunner


def open_runner(
    ckpt_path: str | os.PathLike | None = None,
    onnx_path: str | os.PathLike | None = None,
    onnx_threads: int | None = None,
) -> tuple[TorchRunner | OnnxRunner, ModelCard]:
    """The probability function and card of a checkpoint (PyTorch) or of an exported file (onnxruntime, with
    ``onnx_threads`` intra-op threads: all cores when ``None``)."""
    if (ckpt_path is None) == (onnx_path is None):
        raise ValueError("give exactly one of ckpt_path and onnx_path")
    if onnx_path is not None:
        runner = OnnxRunner(onnx_path, onnx_threads)
        return runner, runner.card
    from catdog_pl.inference.runners import TorchRunner, load_predictor  # torch: only for a checkpoint

    predictor, card = load_predictor(ckpt_path)
    return TorchRunner(predictor), card
