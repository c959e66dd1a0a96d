"""What a client needs to know about a model, and what travels with it into an ONNX file's metadata and ``serve``'s
``/info``: its classes, threshold, input recipe and accuracy. No torch: the ONNX server reads it without PyTorch.

A checkpoint's test accuracy: ``python -m catdog_pl test --ckpt_path X`` writes ``X.test.json`` beside the
checkpoint (:func:`write_test_record`), with the SHA-256 of the file it tested; ``export`` and ``serve`` read it
(:func:`read_test_record`) and ignore one whose checkpoint has changed since.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from catdog_pl import __version__
from catdog_pl.core.csvfile import write_text_atomic
from catdog_pl.core.labels import Classes, decide_one

#: ``serve`` answers every class's probability up to this many classes, else the most probable ones.
MAX_ANSWER_CLASSES = 20


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
    #: The last ``test`` of the checkpoint: ``{"acc", "low95", "high95", "n", "data"}`` (:func:`read_test_record`).
    test: dict | None = None

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
            "draft": "none: every pixel decoded, as Keras's load_img does"
            if self.interpolation == "nearest"
            else f"JPEG only: img.draft('RGB', ({s}, {s})) before decoding (smallest DCT scale covering {s} px)",
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
        if self.test:
            props["test"] = json.dumps(self.test)
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
            test=json.loads(props["test"]) if "test" in props else None,
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


#: The file beside a checkpoint where ``test`` records its figures: ``last.ckpt`` -> ``last.ckpt.test.json``.
TEST_RECORD_SUFFIX = ".test.json"


def test_record_path(ckpt_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(ckpt_path)}{TEST_RECORD_SUFFIX}")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_test_record(
    ckpt_path: str | os.PathLike, acc: float, low95: float, high95: float, n: int, data: str, **extra: object
) -> Path:
    """Write ``<ckpt_path>.test.json`` atomically: the accuracy ``test`` measured, its 95 % interval, the number of
    test images and the data set's name (``data``), with the checkpoint's SHA-256 (``extra``: more fields)."""
    record = {
        "acc": float(acc),
        "low95": float(low95),
        "high95": float(high95),
        "n": int(n),
        "data": str(data),
        **extra,
        "checkpoint_sha256": file_sha256(ckpt_path),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "catdog_pl_version": __version__,
    }
    return write_text_atomic(test_record_path(ckpt_path), json.dumps(record, indent=2) + "\n")


def read_test_record(ckpt_path: str | os.PathLike) -> dict | None:
    """The figures of the last ``test`` of this checkpoint (``{"acc", "low95", "high95", "n", "data"}``), or
    ``None``: never tested, the record unreadable, or the checkpoint changed since (its SHA-256 differs)."""
    path = test_record_path(ckpt_path)
    try:
        record = json.loads(path.read_text())
        if record.get("checkpoint_sha256") != file_sha256(ckpt_path):
            return None
        return {
            "acc": float(record["acc"]),
            "low95": float(record["low95"]),
            "high95": float(record["high95"]),
            "n": int(record["n"]),
            "data": str(record["data"]),
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
