"""Prediction on new photos: :class:`Predictor`, the Python API, and the rows, CSV and terminal table it shares with
``predict``'s writer (:mod:`~catdog_pl.inference.writer`). Both read photos with one reader
(:class:`~catdog_pl.data.inputs.PredictionSet`), so a photo gets the same probability whichever way it is predicted,
and the same as ``test`` gives it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from catdog_pl.core.csvfile import write_csv_atomic
from catdog_pl.core.devices import bf16_is_fast
from catdog_pl.core.errors import ImageError
from catdog_pl.core.labels import Classes, decide_one
from catdog_pl.data.inputs import PredictionSet
from catdog_pl.inference.checkpoints import load_classifier
from catdog_pl.models.classifier import Classifier

#: Above this many classes the CSV keeps the top ``DEFAULT_TOP_K`` classes of each photo instead of a column each.
MAX_CLASS_COLUMNS = 20
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    """One image's answer: ``label``, its ``probability`` and every label's ``probabilities``, or ``error`` when it
    could not be read."""

    path: str
    label: str | None
    probability: float | None
    error: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


def collect(probabilities: dict[int, list[float]], errors: dict[int, str], indices, probs, batch_errors) -> None:
    """Add one batch's results to ``probabilities`` (readable images) and ``errors`` (the rest), by input index."""
    for index, p, error in zip(indices.tolist(), probs.tolist(), batch_errors, strict=True):
        if error:
            errors[index] = error
        else:
            probabilities[index] = p


def make_predictions(
    dataset: PredictionSet, probabilities: dict[int, list[float]], errors: dict[int, str], classes: Classes
) -> list[Prediction]:
    """Rows in input order from per-index probabilities and errors (each index once, however it was sharded)."""
    rows = []
    for index in range(len(dataset)):
        error = errors.get(index, "")
        if error or index not in probabilities:
            rows.append(Prediction(dataset.name(index), None, None, error or "not predicted"))
            continue
        p = probabilities[index]
        picked = decide_one(p, classes.threshold, classes.binary)
        every = dict(zip(classes.labels, p, strict=True))
        rows.append(Prediction(dataset.name(index), classes.labels[picked], p[picked], probabilities=every))
    return rows


def write_csv(
    rows: Sequence[Prediction], output: str | os.PathLike, classes: Classes, top_k: int | None = None
) -> Path:
    """Write ``path,label,probability,p_<label>...,error`` rows to ``output``: a ``p_`` column per class, or with
    ``top_k`` (the default above :data:`MAX_CLASS_COLUMNS` classes) ``top2,p_top2,...`` up to the k-th. Atomic: a
    partial file never replaces a good one; a folder that cannot be written is an error naming ``output``."""
    if top_k is None and len(classes.labels) > MAX_CLASS_COLUMNS:
        top_k = DEFAULT_TOP_K
    if top_k:
        extra = [name for rank in range(2, top_k + 1) for name in (f"top{rank}", f"p_top{rank}")]
    else:
        extra = [f"p_{label}" for label in classes.labels]

    def cells(row: Prediction) -> list[str]:
        if not row.ok:
            return [row.path, "", "", *[""] * len(extra), row.error]
        if top_k:
            ranked = sorted(row.probabilities.items(), key=lambda item: -item[1])[1:top_k]
            ranked += [("", None)] * (top_k - 1 - len(ranked))
            tail = [x for label, p in ranked for x in (label, "" if p is None else f"{p:.6f}")]
        else:
            tail = [f"{row.probabilities[label]:.6f}" for label in classes.labels]
        return [row.path, row.label, f"{row.probability:.6f}", *tail, row.error]

    return write_csv_atomic(output, ("path", "label", "probability", *extra, "error"), (cells(r) for r in rows))


def format_table(rows: Sequence[Prediction], limit: int = 20) -> str:
    """A short terminal table: the first ``limit`` rows, then a count of the rest."""
    width = min(60, max((len(row.path) for row in rows[:limit]), default=4))
    label_width = max(6, *(len(row.label or "") for row in rows[:limit])) if rows else 6
    lines = [f"{'path':<{width}}  {'label':<{label_width}} {'probability':>11}"]
    for row in rows[:limit]:
        path = row.path if len(row.path) <= width else "..." + row.path[-(width - 3) :]
        if row.ok:
            lines.append(f"{path:<{width}}  {row.label:<{label_width}} {row.probability:11.3f}")
        else:
            lines.append(f"{path:<{width}}  error: {row.error}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more rows in the CSV")
    return "\n".join(lines)


class Predictor:
    """Predict from Python, with the CLI's preprocessing, labels and precision.

    >>> predictor = Predictor.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")  # doctest: +SKIP
    >>> predictor.predict("photo.jpg")  # doctest: +SKIP
    Prediction(path='photo.jpg', label='dog', probability=0.93, error='')
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
        ``CatDogModule``, which carries its own."""
        self.device = torch.device(device)
        # The CLI's default precision, so that both give the same probabilities.
        self.bf16 = bf16_is_fast(self.device.type) if bf16 is None else bf16
        self.model = model.to(self.device).eval()
        self.hparams = dict(model.hparams if hparams is None else hparams)
        hp = self.hparams
        self.classes = Classes.of(hp, threshold)
        self.threshold = self.classes.threshold
        self.class_names = list(self.classes.names)
        self.labels = list(self.classes.labels)
        self.image_size = int(hp["image_size"])
        self.interpolation = hp["interpolation"]
        self.mean, self.std = tuple(hp["mean"]), tuple(hp["std"])

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
        bf16: bool | None = None,
    ) -> Predictor:
        model, hparams = load_classifier(path, map_location=device)
        return cls(model, threshold=threshold, device=device, bf16=bf16, hparams=hparams)

    def predict(self, item: str | os.PathLike | Image.Image) -> Prediction:
        """One image (a path or a PIL image); an unreadable file raises :class:`ImageError`."""
        row = self.predict_many([item])[0]
        if not row.ok:
            raise ImageError(row.error)
        return row

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Every class's probabilities, ``(B, C)``, of a ``(B, 3, S, S)`` batch of [0, 1] pixels, as ``predict``
        computes them."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.probabilities(images.to(self.device)).float().cpu()

    def predict_many(
        self, items: Sequence[str | os.PathLike | Image.Image], batch_size: int = 32, num_workers: int = 0
    ) -> list[Prediction]:
        """Many images in batches; unreadable files get a row with their error instead of raising."""
        dataset = PredictionSet(items, self.image_size, interpolation=self.interpolation)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        probabilities, errors = {}, {}
        for images, indices, batch_errors in loader:
            collect(probabilities, errors, indices, self.probabilities(images), batch_errors)
        return make_predictions(dataset, probabilities, errors, self.classes)
