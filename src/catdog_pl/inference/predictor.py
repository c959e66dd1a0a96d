"""Prediction on new photos from Python: :class:`Predictor`, on either runtime (the PyTorch module of a checkpoint,
or its ONNX graph with onnxruntime, :mod:`~catdog_pl.inference.runtime`). Photos are read with one recipe
(:mod:`~catdog_pl.inference.decode`) in threads ahead of the network, and become rows, a CSV and a terminal table
(:mod:`~catdog_pl.inference.rows`) as ``predict`` writes them, so a photo gets the same label whichever way it is
predicted, and the same as ``test`` gives it. No torch is imported for an ONNX graph.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from catdog_pl.core.errors import ImageError
from catdog_pl.core.labels import Classes
from catdog_pl.inference.decode import PhotoInputs, decoded_batches
from catdog_pl.inference.onnx import OnnxRunner
from catdog_pl.inference.rows import (  # noqa: F401  # the rows' names, importable from here as before
    DEFAULT_TOP_K,
    MAX_CLASS_COLUMNS,
    Prediction,
    collect,
    format_table,
    make_predictions,
    write_csv,
)
from catdog_pl.inference.runtime import cached_graph_runner, is_graph, resolve_runtime

if TYPE_CHECKING:
    import torch

    from catdog_pl.inference.runners import TorchRunner
    from catdog_pl.models.classifier import Classifier


def onnx_layout(cores: int | None = None) -> tuple[int, int]:
    """``(sessions, threads per session)`` for onnxruntime on ``cores`` cores: two sessions sharing each batch, of
    half the cores each. (Measured on 2 cores, benchmarks/predict_speed.py: two 1-thread sessions beside a decoding
    thread labelled more photos per second than one 2-thread session, fp32 and int8 alike, as they served more.)"""
    if cores is None:  # the affinity mask, as core.parallel.available_cores (which imports tqdm: 0.3 s of start-up)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    sessions = min(2, cores)
    return sessions, max(1, cores // sessions)


#: Decoding threads beside the network: one reads the next batch while the network runs on this one.
DECODE_THREADS = 1


class Predictor:
    """Predict from Python, with the CLI's preprocessing, labels and precision, on either runtime.

    >>> predictor = Predictor.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")  # doctest: +SKIP
    >>> predictor.predict("photo.jpg")  # doctest: +SKIP
    Prediction(path='photo.jpg', label='dog', probability=0.93, error='')

    ``from_checkpoint`` takes a checkpoint or an exported ``.onnx`` file; ``runtime="auto"`` runs a checkpoint's
    graph (exported once, cached beside it) with onnxruntime on the CPU, and its PyTorch module on a GPU
    (``device="cuda"``) or in bf16; ``runtime="pytorch"`` or ``"onnx"`` chooses.
    """

    def __init__(
        self,
        model: Classifier,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
        bf16: bool | None = None,
        hparams: Mapping | None = None,
    ) -> None:
        """``model``: a :class:`~catdog_pl.models.classifier.Classifier` with the checkpoint's ``hparams``, or a
        ``CatDogModule``, which carries its own; run with PyTorch on ``device``."""
        from catdog_pl.core.devices import bf16_is_fast
        from catdog_pl.inference.runners import TorchRunner

        device_type = str(device).split(":")[0]
        # The CLI's default precision, so that both give the same probabilities.
        bf16 = bf16_is_fast(device_type) if bf16 is None else bf16
        self._setup(TorchRunner(model, device, bf16), dict(model.hparams if hparams is None else hparams), threshold)

    def _setup(self, runner: TorchRunner | OnnxRunner, hparams: Mapping, threshold: float | None) -> None:
        self.runner = runner
        self.runtime = "onnxruntime" if isinstance(runner, OnnxRunner) else "pytorch"
        self.model = getattr(runner, "model", None)  # the PyTorch module; None on onnxruntime
        self.device = getattr(runner, "device", "cpu")
        self.bf16 = bool(getattr(runner, "bf16", False))
        self.hparams = dict(hparams)
        hp = self.hparams
        self.classes = Classes.of(hp, threshold)
        self.threshold = self.classes.threshold
        self.class_names = list(self.classes.names)
        self.labels = list(self.classes.labels)
        self.image_size = int(hp["image_size"])
        self.interpolation = hp["interpolation"]
        self.mean, self.std = tuple(hp["mean"]), tuple(hp["std"])

    @classmethod
    def from_onnx(cls, runner: OnnxRunner | str | os.PathLike, threshold: float | None = None) -> Predictor:
        """A predictor of an exported graph (a path, or an open :class:`~catdog_pl.inference.onnx.OnnxRunner`)."""
        runner = runner if isinstance(runner, OnnxRunner) else OnnxRunner(runner, *onnx_layout()[::-1])
        card = runner.card
        hparams = {
            "class_names": list(card.class_names),
            "labels": card.labels,
            "task": "binary" if card.classes.binary else "multiclass",
            "threshold": card.threshold,
            "image_size": card.image_size,
            "interpolation": card.interpolation,
            "mean": card.mean,
            "std": card.std,
            "backbone": card.backbone,
        }
        predictor = cls.__new__(cls)
        predictor._setup(runner, hparams, threshold)
        return predictor

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
        bf16: bool | None = None,
        runtime: str = "auto",
        threads: int | None = None,
        sessions: int | None = None,
    ) -> Predictor:
        """A checkpoint (or an ``.onnx`` file) on ``runtime``: ``auto`` takes onnxruntime on the CPU in fp32 (asking
        for ``bf16=True`` or a GPU ``device`` takes PyTorch). ``threads`` and ``sessions`` lay out onnxruntime
        (default :func:`onnx_layout`)."""
        if runtime == "auto" and bf16:
            runtime = "pytorch"  # the graph is fp32
        if resolve_runtime(path, runtime, str(device)) == "onnx":
            default_sessions, default_threads = onnx_layout()
            layout = (threads or default_threads, sessions or default_sessions)
            runner = OnnxRunner(path, *layout) if is_graph(path) else cached_graph_runner(path, *layout)
            return cls.from_onnx(runner, threshold)
        from catdog_pl.inference.checkpoints import load_classifier  # torch: only for the PyTorch module

        model, hparams = load_classifier(path, map_location=device)
        return cls(model, threshold=threshold, device=device, bf16=bf16, hparams=hparams)

    def predict(self, item: str | os.PathLike | Image.Image) -> Prediction:
        """One image (a path or a PIL image); an unreadable file raises :class:`ImageError`."""
        row = self.predict_many([item])[0]
        if not row.ok:
            raise ImageError(row.error)
        return row

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Every class's probabilities, ``(B, C)``, of a ``(B, 3, S, S)`` batch of [0, 1] pixels, as ``predict``
        computes them."""
        if isinstance(self.runner, OnnxRunner):
            import torch

            pixels = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            return torch.from_numpy(self.runner(pixels.cpu().numpy()))
        return self.runner.probabilities(images)

    def predict_many(
        self,
        items: Sequence[str | os.PathLike | Image.Image],
        batch_size: int = 32,
        num_workers: int = DECODE_THREADS,
    ) -> list[Prediction]:
        """Many images in batches, read by ``num_workers`` threads ahead of the network (0: between batches);
        unreadable files get a row with their error instead of raising."""
        inputs = PhotoInputs(items, self.image_size, self.interpolation)
        probabilities: dict[int, list[float]] = {}
        errors: dict[int, str] = {}
        for indices, images, batch_errors in decoded_batches(inputs, batch_size, num_workers):
            collect(probabilities, errors, indices, np.asarray(self.runner(images)), batch_errors)
        return make_predictions(inputs, probabilities, errors, self.classes)
