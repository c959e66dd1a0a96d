"""What ``export`` and ``serve`` share: the one adapter to the Python predictor, the photo -> uint8 recipe, the
network wrapped to take uint8 pixels and give probabilities, and the facts about a model that travel with it.

The recipe is the one ``predict`` follows: :func:`~catdog_pl.images.load_rgb` (JPEG draft to the smallest DCT scale
covering the input size, EXIF orientation, RGB), then :func:`~catdog_pl.images.squash` to ``S x S`` with the model's
resampling filter. The rest (``/ 255``, then the module: ``(x - mean) / std``, the network, the sigmoid, the mirror
image with ``tta``) is :class:`ProbabilityHead`, which is also what goes into the ONNX graph, so that PyTorch and
onnxruntime run the same computation.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from catdog_pl import __version__
from catdog_pl.errors import InputError
from catdog_pl.images import DEFAULT_MAX_PIXELS, load_rgb, squash
from catdog_pl.labels import label_for, label_of
from catdog_pl.module import CatDogModule
from catdog_pl.prediction import Predictor


def load_predictor(ckpt_path: str | os.PathLike) -> tuple[Predictor, ModelCard]:
    """The one place where export and serve reach the Python predictor (on the CPU, with its default precision),
    with the card of its checkpoint."""
    predictor = Predictor.from_checkpoint(ckpt_path, device="cpu")
    return predictor, ModelCard.of(predictor, checkpoint_metrics(ckpt_path))


def checkpoint_metrics(ckpt_path: str | os.PathLike) -> dict[str, float]:
    """The metrics a checkpoint saved (``{"test/acc": 0.8, ...}``), or ``{}`` for one that saved none."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return {name: float(value) for name, value in (checkpoint.get("metrics") or {}).items()}


class Upload(io.BytesIO):
    """An uploaded file in memory, named in the loader's error messages by ``name`` instead of an address."""

    def __init__(self, data: bytes, name: str = "upload") -> None:
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def prepare_image(
    source: str | os.PathLike | io.BytesIO,
    image_size: int,
    interpolation: str = "bilinear",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """A photo as the network's input before scaling: uint8 ``(S, S, 3)`` RGB; raises :class:`ImageError`."""
    img = load_rgb(source, min_size=image_size, max_pixels=max_pixels)
    return np.asarray(squash(img, image_size, interpolation), dtype=np.uint8)


class ProbabilityHead(torch.nn.Module):
    """uint8 ``(N, S, S, 3)`` RGB -> float32 ``(N, 2)`` probabilities ``[1 - p, p]``, p that of class 1."""

    def __init__(self, model: CatDogModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
        p = self.model.probabilities(x).float().reshape(-1)  # (N,): normalised inside the module, as in training
        return torch.stack([1.0 - p, p], dim=1)  # (N, 2)


@dataclass(frozen=True)
class ModelCard:
    """What a client needs to know about a model: its classes, threshold and input recipe, and where it came from."""

    class_names: tuple[str, ...]
    threshold: float
    image_size: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    backbone: str = "keras_cnn"
    test_acc: float | None = None
    val_acc: float | None = None
    version: str = __version__

    @classmethod
    def of(cls, predictor: Predictor, metrics: dict[str, float] | None = None) -> ModelCard:
        """The card of a predictor; ``metrics`` are the checkpoint's (its last validation, and test if it ran)."""
        metrics = metrics or {}
        return cls(
            class_names=tuple(predictor.class_names),
            threshold=float(predictor.threshold),
            image_size=int(predictor.image_size),
            interpolation=str(predictor.interpolation),
            mean=tuple(float(v) for v in predictor.mean),
            std=tuple(float(v) for v in predictor.std),
            backbone=str(predictor.model.hparams.backbone),
            test_acc=metrics.get("test/acc"),
            val_acc=metrics.get("val/acc"),
        )

    @property
    def labels(self) -> list[str]:
        return [label_of(name) for name in self.class_names]

    def resize_recipe(self) -> dict:
        """The decode and resize steps, exactly, for a client that prepares the ``image`` input itself."""
        s = self.image_size
        return {
            "library": "Pillow",
            "draft": f"JPEG only: img.draft('RGB', ({s}, {s})) before decoding (smallest DCT scale covering {s} px)",
            "exif": "ImageOps.exif_transpose(img)",
            "mode": "RGB (transparent pixels composited on white)",
            "squash": f"img.resize(({s}, {s}), Image.{self.interpolation.upper()}): the whole photo, no crop",
            "resample": self.interpolation,
            "output": f"uint8 (N, {s}, {s}, 3) RGB",
        }

    def to_metadata(self) -> dict[str, str]:
        """ONNX ``metadata_props``: strings, lists and dicts as JSON."""
        props = {
            "class_names": json.dumps(list(self.class_names)),
            "threshold": repr(self.threshold),
            "image_size": str(self.image_size),
            "resize": json.dumps(self.resize_recipe()),
            "interpolation": self.interpolation,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "backbone": self.backbone,
            "catdog_pl_version": self.version,
        }
        for name in ("test_acc", "val_acc"):
            if getattr(self, name) is not None:
                props[name] = repr(getattr(self, name))
        return props

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> ModelCard:
        return cls(
            class_names=tuple(json.loads(props["class_names"])),
            threshold=float(props["threshold"]),
            image_size=int(props["image_size"]),
            interpolation=props.get("interpolation", "bilinear"),
            mean=tuple(json.loads(props.get("mean", "[0, 0, 0]"))),
            std=tuple(json.loads(props.get("std", "[1, 1, 1]"))),
            backbone=props.get("backbone", "keras_cnn"),
            test_acc=float(props["test_acc"]) if "test_acc" in props else None,
            val_acc=float(props["val_acc"]) if "val_acc" in props else None,
            version=props.get("catdog_pl_version", "unknown"),
        )

    def answer(self, probabilities: Sequence[float]) -> dict:
        """The JSON answer for one image: its label, each label's probability, and the threshold used."""
        probabilities = [float(p) for p in probabilities]
        labels = self.labels
        return {
            "label": label_for(probabilities[1], self.class_names, self.threshold),
            "probabilities": dict(zip(labels, probabilities, strict=True)),
            "threshold": self.threshold,
        }


class TorchRunner:
    """Probabilities from a checkpoint's network, with the predictor's precision (bf16 autocast where it is fast)."""

    def __init__(self, predictor: Predictor) -> None:
        self.head = ProbabilityHead(predictor.model).eval()
        self.bf16 = predictor.bf16

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.head(torch.from_numpy(images)).float().numpy()


class OnnxRunner:
    """Probabilities from an exported ``model.onnx`` with onnxruntime; ``card`` is read from its metadata."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime  # the optional [onnx] extra

        if not os.path.isfile(path):
            raise InputError(f"{path}: no such ONNX file")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads  # this session's own pool; 0 (the default) is one per core
        try:
            self.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
            self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        except Exception as error:  # onnxruntime's own types for a bad file; KeyError for foreign metadata
            raise InputError(
                f"{path}: not an ONNX file from catdog_pl export ({type(error).__name__}: {error})"
            ) from None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["probabilities"], {"image": images})[0]


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
    predictor, card = load_predictor(ckpt_path)
    return TorchRunner(predictor), card
