"""What ``predict`` reads: the files a path, folder or glob names, and a dataset of them that never raises on a bad
file. The CLI's ``predict``, the Python API and the service all read images through it."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from catdog_pl.core.errors import ImageError
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, decode_size, load_rgb, to_rgb
from catdog_pl.data.listing import expand_inputs  # noqa: F401  # its home before the ONNX path needed it without torch
from catdog_pl.data.transforms import build_eval_transform


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
