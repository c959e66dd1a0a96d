"""Prediction on new photos: :class:`Predictor`, the Python API, and the rows, CSV and terminal table it shares with
``predict``'s writer (:mod:`~catdog_pl.inference.writer`). Both read photos with one reader
(:class:`~catdog_pl.data.inputs.PredictionSet`), so a photo gets the same probability whichever way it is predicted,
and the same as ``test`` gives it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from catdog_pl.core.csvfile import write_csv_atomic
from catdog_pl.core.devices import bf16_is_fast
from catdog_pl.core.errors import ImageError
from catdog_pl.core.labels import check_threshold, label_for, probability_name
from catdog_pl.data.inputs import PredictionSet
from catdog_pl.inference.checkpoints import load_classifier
from catdog_pl.models.classifier import Classifier


@dataclass(frozen=True)
class Prediction:
    """One image's answer: ``label`` and ``probability`` (of class 1), or ``error`` when it could not be read."""

    path: str
    label: str | None
    probability: float | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def collect(probabilities: dict[int, float], errors: dict[int, str], indices, probs, batch_errors) -> None:
    """Add one batch's results to ``probabilities`` (readable images) and ``errors`` (the rest), by input index."""
    for index, p, error in zip(indices.tolist(), probs.tolist(), batch_errors, strict=True):
        if error:
            errors[index] = error
        else:
            probabilities[index] = p


def make_predictions(
    dataset: PredictionSet,
    probabilities: dict[int, float],
    errors: dict[int, str],
    class_names: Sequence[str],
    threshold: float,
) -> list[Prediction]:
    """Rows in input order from per-index probabilities and errors (each index once, however it was sharded)."""
    rows = []
    for index in range(len(dataset)):
        error = errors.get(index, "")
        if error or index not in probabilities:
            rows.append(Prediction(dataset.name(index), None, None, error or "not predicted"))
        else:
            p = probabilities[index]
            rows.append(Prediction(dataset.name(index), label_for(p, class_names, threshold), p))
    return rows


def write_csv(rows: Iterable[Prediction], output: str | os.PathLike, class_names: Sequence[str]) -> Path:
    """Write ``path,label,p_<class 1>,error`` rows to ``output`` (atomically: a partial file never replaces a good
    one; a folder that cannot be written is an error naming ``output``)."""
    return write_csv_atomic(
        output,
        ("path", "label", probability_name(class_names), "error"),
        ([r.path, r.label or "", "" if r.probability is None else f"{r.probability:.6f}", r.error] for r in rows),
    )


def format_table(rows: Sequence[Prediction], class_names: Sequence[str], limit: int = 20) -> str:
    """A short terminal table: the first ``limit`` rows, then a count of the rest."""
    width = min(60, max((len(row.path) for row in rows[:limit]), default=4))
    lines = [f"{'path':<{width}}  {'label':<6} {probability_name(class_names):>6}"]
    for row in rows[:limit]:
        path = row.path if len(row.path) <= width else "..." + row.path[-(width - 3) :]
        if row.ok:
            lines.append(f"{path:<{width}}  {row.label:<6} {row.probability:6.3f}")
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
        self.threshold = hp["threshold"] if threshold is None else check_threshold(threshold)
        self.class_names = list(hp["class_names"])
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
        """Class-1 probabilities of a ``(B, 3, S, S)`` batch of [0, 1] pixels, as ``predict`` computes them."""
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
        return make_predictions(dataset, probabilities, errors, self.class_names, self.threshold)
