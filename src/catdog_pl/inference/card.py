"""What a client needs to know about a model, and what travels with it into an ONNX file's metadata and ``serve``'s
``/info``: its classes, threshold, input recipe and accuracy. No torch: the ONNX server reads it without PyTorch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from catdog_pl import __version__
from catdog_pl.core.labels import Classes, decide_one

#: ``serve`` answers every class's probability up to this many classes, else the most probable ones.
MAX_ANSWER_CLASSES = 20

if TYPE_CHECKING:
    from catdog_pl.inference.predictor import Predictor


@dataclass(frozen=True)
class ModelCard:
    """What a client needs to know about a model: its classes, threshold and input recipe, and where it came from."""

    class_names: tuple[str, ...]
    threshold: float
    image_size: int
    display_labels: tuple[str, ...] = ()
    task: str | None = None
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
        classes = predictor.classes
        return cls(
            class_names=classes.names,
            threshold=float(classes.threshold),
            image_size=int(predictor.image_size),
            display_labels=classes.labels,
            task="binary" if classes.binary else "multiclass",
            interpolation=str(predictor.interpolation),
            mean=tuple(float(v) for v in predictor.mean),
            std=tuple(float(v) for v in predictor.std),
            backbone=str(predictor.hparams.get("backbone", "keras_cnn")),
            test_acc=metrics.get("test/acc"),
            val_acc=metrics.get("val/acc"),
        )

    @property
    def classes(self) -> Classes:
        return Classes.of(
            {"class_names": self.class_names, "labels": self.display_labels, "task": self.task},
            self.threshold,
        )

    @property
    def labels(self) -> list[str]:
        return list(self.classes.labels)

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
            "labels": json.dumps(self.labels),
            "decision": json.dumps(self.classes.rule()),
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
            display_labels=tuple(json.loads(props.get("labels", "[]"))),
            task="binary" if json.loads(props.get("decision", "{}")).get("rule", "threshold") == "threshold" else None,
            interpolation=props.get("interpolation", "bilinear"),
            mean=tuple(json.loads(props.get("mean", "[0, 0, 0]"))),
            std=tuple(json.loads(props.get("std", "[1, 1, 1]"))),
            backbone=props.get("backbone", "keras_cnn"),
            test_acc=float(props["test_acc"]) if "test_acc" in props else None,
            val_acc=float(props["val_acc"]) if "val_acc" in props else None,
            version=props.get("catdog_pl_version", "unknown"),
        )

    def answer(self, probabilities: Sequence[float], top_k: int = MAX_ANSWER_CLASSES) -> dict:
        """The JSON answer for one image: its label and its probability, each label's probability (the ``top_k``
        most probable above that many classes), and the threshold of a binary model."""
        probabilities = [float(p) for p in probabilities]
        classes = self.classes
        picked = decide_one(probabilities, classes.threshold, classes.binary)
        every = dict(zip(classes.labels, probabilities, strict=True))
        if len(every) > top_k:
            every = dict(sorted(every.items(), key=lambda item: -item[1])[:top_k])
        answer = {"label": classes.labels[picked], "probability": probabilities[picked], "probabilities": every}
        if classes.binary:
            answer["threshold"] = self.threshold
        return answer
