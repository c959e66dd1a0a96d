"""Prediction on new photos: inputs (file, folder or glob), the CSV writer, and a Python API sharing their code.

The CLI (``python -m catdog_pl predict --ckpt_path best.ckpt --data.predict_path photos/``) and
:class:`Classifier` read images with the same loader and eval transform as ``test``, so a photo gets the same
probability whichever way it is predicted.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from catdog_pl.errors import CheckpointError, ImageError, InputError
from catdog_pl.folders import is_image_file, write_csv_atomic
from catdog_pl.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_rgb, to_rgb
from catdog_pl.transforms import build_eval_transform

CSV_COLUMNS = ("path", "label", "p_dog", "error")


def expand_inputs(spec: str | os.PathLike) -> list[str]:
    """The image files named by ``spec``: one file, a folder (searched recursively, images by suffix), or a glob.

    A file named directly is always taken, whatever its suffix, so that a bad file gets its error row. In folders,
    images are found as in training (:func:`~catdog_pl.folders.is_image_file`: by suffix, else by content); hidden
    files, thumbnail caches and notes are passed over.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return [text]
    if path.is_dir():
        found = sorted(
            os.path.join(root, name)
            for root, dirs, names in os.walk(path)
            for name in names
            if is_image_file(os.path.join(root, name))
            and not any(part.startswith(".") for part in Path(root).relative_to(path).parts)
        )
        if not found:
            raise InputError(f"{text}: folder holds no images ({', '.join(IMAGE_SUFFIXES)} in any case, or by content)")
        return found
    if glob.has_magic(text):
        found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"{text}: the pattern matches no files")
        return found
    raise InputError(f"{text}: no such file or folder")


def label_of(class_name: str) -> str:
    """Display label of a class folder: ``cats`` -> ``cat``, ``dogs`` -> ``dog``; ``Cat`` stays ``Cat``."""
    return class_name[:-1] if class_name.endswith("s") and not class_name.endswith("ss") else class_name


class PredictionSet(Dataset):
    """Images to predict, each read with the eval transform; an unreadable one yields its error, not an exception.

    Items are ``(image, index, error)``: the index into ``items`` travels with the image, so results come back in
    input order whatever the sampler did (Lightning issue #10782), and ``error`` is ``""`` or a one-line message.
    """

    def __init__(
        self,
        items: Sequence[str | os.PathLike | Image.Image],
        image_size: int = 64,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.items = list(items)
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.transform = build_eval_transform(image_size)

    def __len__(self) -> int:
        return len(self.items)

    def name(self, index: int) -> str:
        item = self.items[index]
        return f"<image {index}>" if isinstance(item, Image.Image) else os.fspath(item)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        item = self.items[index]
        try:
            if isinstance(item, Image.Image):
                img = to_rgb(item)
            else:
                img = load_rgb(item, min_size=self.image_size, max_pixels=self.max_pixels)
            return self.transform(img), index, ""
        except ImageError as error:
            return torch.zeros(3, self.image_size, self.image_size), index, str(error)


@dataclass(frozen=True)
class Prediction:
    """One image's answer: ``label`` and ``p_dog`` (the probability of class 1), or ``error`` when unreadable."""

    path: str
    label: str | None
    p_dog: float | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def collect(p_dog: dict[int, float], errors: dict[int, str], indices, probs, batch_errors) -> None:
    """Add one batch's results to ``p_dog`` (readable images) and ``errors`` (the rest), by input index."""
    for index, p, error in zip(indices.tolist(), probs.tolist(), batch_errors, strict=True):
        if error:
            errors[index] = error
        else:
            p_dog[index] = p


def make_predictions(
    dataset: PredictionSet,
    p_dog: dict[int, float],
    errors: dict[int, str],
    class_names: Sequence[str],
    threshold: float,
) -> list[Prediction]:
    """Rows in input order from per-index probabilities and errors (each index once, however it was sharded)."""
    labels = [label_of(name) for name in class_names]
    rows = []
    for index in range(len(dataset)):
        error = errors.get(index, "")
        if error or index not in p_dog:
            rows.append(Prediction(dataset.name(index), None, None, error or "not predicted"))
        else:
            p = p_dog[index]
            rows.append(Prediction(dataset.name(index), labels[int(p >= threshold)], p))
    return rows


def write_csv(rows: Iterable[Prediction], output: str | os.PathLike) -> Path:
    """Write ``path,label,p_dog,error`` rows to ``output`` (atomically: a partial file never replaces a good one)."""
    return write_csv_atomic(
        output,
        CSV_COLUMNS,
        ([r.path, r.label or "", "" if r.p_dog is None else f"{r.p_dog:.6f}", r.error] for r in rows),
    )


def format_table(rows: Sequence[Prediction], limit: int = 20) -> str:
    """A short terminal table: the first ``limit`` rows, then a count of the rest."""
    width = min(60, max((len(row.path) for row in rows[:limit]), default=4))
    lines = [f"{'path':<{width}}  {'label':<6} {'p_dog':>6}"]
    for row in rows[:limit]:
        path = row.path if len(row.path) <= width else "..." + row.path[-(width - 3) :]
        if row.ok:
            lines.append(f"{path:<{width}}  {row.label:<6} {row.p_dog:6.3f}")
        else:
            lines.append(f"{path:<{width}}  error: {row.error}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more rows in the CSV")
    return "\n".join(lines)


class PredictionWriter(BasePredictionWriter):
    """Write every prediction to a CSV (``path,label,p_dog,error``), once and in input order, also under DDP.

    Args:
        output: CSV path; by default ``predictions.csv`` in the run folder (``trainer.log_dir``).
        threshold: probability of class 1 above which the label is class 1; by default the model's.
        show: rows printed on the terminal.
    """

    def __init__(self, output: str | None = None, threshold: float | None = None, show: int = 20) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.threshold = threshold
        self.show = show
        self.rows: list[Prediction] = []
        self.path: Path | None = None
        self.threshold_used: float | None = None

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence, batch_indices: Sequence
    ) -> None:
        p_dog: dict[int, float] = {}
        errors: dict[int, str] = {}
        for batch in predictions:
            collect(p_dog, errors, batch["index"], batch["p_dog"], batch["error"])
        if trainer.world_size > 1:  # every rank predicted a shard: gather them, each index kept once
            gathered: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (p_dog, errors))
            for shard_p, shard_errors in gathered:
                p_dog.update(shard_p)
                errors.update(shard_errors)
        dataset = trainer.predict_dataloaders.dataset
        threshold = pl_module.hparams.threshold if self.threshold is None else self.threshold
        self.rows = make_predictions(dataset, p_dog, errors, pl_module.hparams.class_names, threshold)
        self.threshold_used = threshold
        if trainer.is_global_zero:
            output = self.output or os.path.join(trainer.log_dir or ".", "predictions.csv")
            self.path = write_csv(self.rows, output)

    def summary(self) -> str:
        """The terminal report: a short table, then one line with the counts and the CSV's path."""
        failed = sum(not row.ok for row in self.rows)
        return (
            f"{format_table(self.rows, self.show)}\n{len(self.rows)} images: {len(self.rows) - failed} predicted, "
            f"{failed} failed (threshold {self.threshold_used:g}) -> {self.path}"
        )


def load_checkpoint_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LightningModule:
    """Load a ``CatDogClassifier`` from ``path`` without running code from it (``weights_only=True``)."""
    from catdog_pl.module import CatDogClassifier

    check_checkpoint(path)
    return CatDogClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=True)


def check_checkpoint(path: str | os.PathLike) -> dict:
    """Read ``path`` safely (``weights_only=True``) and check it is a catdog_pl checkpoint; return it."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for non-checkpoints: pickle, zip, unsafe globals
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a catdog_pl checkpoint (cannot be read safely: {reason})") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not state or not hparams or "net.conv1.weight" not in state or "image_size" not in hparams:
        raise CheckpointError(f"{path}: not a catdog_pl checkpoint (no CatDogClassifier weights and hyper-parameters)")
    return checkpoint


class Classifier:
    """Predict cats and dogs from Python, with the CLI's preprocessing and labels.

    >>> clf = Classifier.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")  # doctest: +SKIP
    >>> clf.predict("photo.jpg")  # doctest: +SKIP
    Prediction(path='photo.jpg', label='dog', p_dog=0.93, error='')
    """

    def __init__(
        self,
        model: LightningModule,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
        bf16: bool | None = None,
    ) -> None:
        from catdog_pl.cli import bf16_is_fast

        self.device = torch.device(device)
        # The CLI's default precision, so that both give the same probabilities.
        self.bf16 = bf16_is_fast(self.device.type) if bf16 is None else bf16
        self.model = model.to(self.device).eval()
        self.threshold = model.hparams.threshold if threshold is None else threshold
        self.class_names = list(model.hparams.class_names)
        self.image_size = int(model.hparams.image_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
        bf16: bool | None = None,
    ) -> Classifier:
        return cls(load_checkpoint_model(path, map_location=device), threshold=threshold, device=device, bf16=bf16)

    def predict(self, item: str | os.PathLike | Image.Image) -> Prediction:
        """One image (a path or a PIL image); an unreadable file raises :class:`ImageError`."""
        row = self.predict_many([item])[0]
        if not row.ok:
            raise ImageError(row.error)
        return row

    @torch.inference_mode()
    def predict_many(
        self, items: Sequence[str | os.PathLike | Image.Image], batch_size: int = 256, num_workers: int = 0
    ) -> list[Prediction]:
        """Many images in batches; unreadable files get a row with their error instead of raising."""
        dataset = PredictionSet(items, self.image_size)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        p_dog, errors = {}, {}
        for images, indices, batch_errors in loader:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(images.to(self.device))
            collect(p_dog, errors, indices, torch.sigmoid(logits.float()), batch_errors)
        return make_predictions(dataset, p_dog, errors, self.class_names, self.threshold)
