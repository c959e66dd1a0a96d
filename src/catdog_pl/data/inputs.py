"""What ``predict`` reads: the files a path, folder or glob names, and a dataset of them that never raises on a bad
file. The CLI's ``predict``, the Python API and the service all read images through it."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from catdog_pl.core.errors import ImageError, InputError
from catdog_pl.data.folders import is_image_file
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_size, load_rgb, to_rgb
from catdog_pl.data.transforms import build_eval_transform


def expand_inputs(spec: str | os.PathLike) -> list[str]:
    """The image files named by ``spec``: one file, a folder (searched recursively, images by suffix), or a glob.

    A file named directly is always taken, whatever its suffix, so that a bad file gets its error row. In folders,
    images are found as in training (:func:`~catdog_pl.data.folders.is_image_file`: by suffix, else by content); hidden
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
        interpolation: str = "bilinear",
    ) -> None:
        self.items = list(items)
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.min_size = decode_size(image_size, interpolation)
        self.transform = build_eval_transform(image_size, interpolation)

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
                img = load_rgb(item, min_size=self.min_size, max_pixels=self.max_pixels)
            return self.transform(img), index, ""
        except ImageError as error:
            return torch.zeros(3, self.image_size, self.image_size), index, str(error)
