"""Labelled photos as datasets: images found by content, and unreadable files set aside (never fatal, never
silent) with a report of each one and why. The layouts themselves are :mod:`~catdog_pl.data.layouts`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import Dataset, default_collate

from catdog_pl.core.csvfile import write_csv_atomic
from catdog_pl.core.errors import ImageError
from catdog_pl.core.parallel import thread_map
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, load_rgb, verify_image
from catdog_pl.data.listing import is_image_file  # noqa: F401  # its home before the ONNX path needed it without torch

#: The original's folders (what ``prepare`` writes).
TRAIN_DIR = "training_set"
TEST_DIR = "test_set"


class LabelledImages(Dataset):
    """Labelled image files (a split of a :class:`~catdog_pl.data.layouts.Layout`) that never die on one bad file.

    A file that fails to load returns ``(None, target, message)``; :func:`collate_skip_bad` drops it from the
    batch and hands the message on, so that the data module reports it and the epoch goes on.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        name: str,
        transform: Callable | None = None,
        loader: Callable = load_rgb,
    ) -> None:
        self.samples = list(samples)
        self.targets = [target for _, target in self.samples]
        self.root = name  # what messages call this split: ``train/``, ``0.2 of train/``
        self.transform, self.loader = transform, loader

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only these samples (the ones that passed the scan)."""
        self.samples = [self.samples[i] for i in indices]
        self.targets = [target for _, target in self.samples]

    def __getitem__(self, index: int) -> tuple:
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except ImageError as error:
            return None, target, str(error)
        return (self.transform(image) if self.transform else image), target, ""


def collate_skip_bad(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the readable samples; return ``(images, targets, errors)`` with the unreadable ones' messages."""
    good = [(image, target) for image, target, _ in batch if image is not None]
    errors = [error for image, _, error in batch if image is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), errors
    images, targets = default_collate(good)
    return images, targets, errors


def check_image(path: str, full: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """``""`` if ``path`` reads as an image, else the one-line reason. Fast: header and ``verify``; full: decode."""
    try:
        (load_rgb if full else verify_image)(path, max_pixels=max_pixels)
    except ImageError as error:
        return str(error)
    return ""


def scan(
    paths: Sequence[str],
    full: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    desc: str = "",
    progress: bool = True,
) -> list[str]:
    """Check every file (threads; a progress bar unless ``progress`` is false); return one reason per path, ``""``
    for the good ones."""
    check = partial(check_image, full=full, max_pixels=max_pixels)
    return list(thread_map(check, paths, desc or "checking images", progress=progress))


class SkippedImages:
    """Every file set aside, with its reason, written as ``path,reason,when`` to a CSV in the run folder."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}

    def add(self, message: str, when: str) -> None:
        path = message.split(": ", 1)[0]
        self.entries.setdefault(path, (message, when))

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, output: str | os.PathLike) -> Path:
        rows = ([path, message[len(path) + 2 :], when] for path, (message, when) in self.entries.items())
        return write_csv_atomic(output, ("path", "reason", "when"), rows)
