"""The fast data path: decode each photo once into an in-memory uint8 tensor, then serve whole batches from it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from catdog_pl.core.devices import host_to_device
from catdog_pl.core.errors import ImageError
from catdog_pl.core.parallel import thread_map
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, decode_size, load_rgb, squash


def cache_nbytes(count: int, side: int) -> int:
    """Bytes of ``count`` cached RGB images of ``side`` x ``side`` pixels."""
    return count * 3 * side * side


def decode_squashed(
    path: str, side: int, max_pixels: int = DEFAULT_MAX_PIXELS, interpolation: str = "bilinear"
) -> np.ndarray:
    """One photo as a ``(side, side, 3)`` uint8 array: ``load_rgb`` then :func:`~catdog_pl.data.images.squash`.

    This is exactly what ``v2.Resize((side, side))`` does to the PIL image in the streaming transforms, so a
    cached eval image equals the streamed one bit for bit.
    """
    img = load_rgb(path, min_size=decode_size(side, interpolation), max_pixels=max_pixels)
    return np.array(squash(img, side, interpolation))


def decode_all(
    paths: Sequence[str],
    side: int,
    threads: int | None = None,
    desc: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    interpolation: str = "bilinear",
) -> tuple[torch.Tensor, list[str]]:
    """Decode ``paths`` into a ``(N, 3, side, side)`` uint8 tensor with a thread pool and a progress bar (unless
    ``progress`` is false).

    Returns the tensor and one message per path: ``""``, or why that file could not be read (its slot is zeros).
    """

    def decode(path: str) -> tuple[np.ndarray | None, str]:
        try:
            return decode_squashed(path, side, max_pixels, interpolation), ""
        except ImageError as error:
            return None, str(error)

    out = torch.zeros(len(paths), side, side, 3, dtype=torch.uint8)
    errors = [""] * len(paths)
    for i, (array, error) in enumerate(thread_map(decode, paths, desc or f"decoding {side}px", threads, progress)):
        if array is None:
            errors[i] = error
        else:
            out[i] = torch.from_numpy(array)
    return out.permute(0, 3, 1, 2).contiguous(), errors  # (N, 3, side, side)


class CachedImages(Dataset):
    """Images decoded once, held as one uint8 tensor, served a whole batch per index lookup.

    ``__getitems__`` lets the DataLoader fetch a batch with one tensor index (no per-sample Python, no worker
    processes); :func:`passthrough_collate` keeps that batch as it is. The tensor may live on the GPU.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = host_to_device(torch.as_tensor(indices), self.images.device)  # the next batch, while the GPU runs
        return self.images[index], self.targets[index]

    def to(self, device: torch.device) -> CachedImages:
        return CachedImages(self.images.to(device), self.targets.to(device))


def passthrough_collate(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate for :class:`CachedImages`: ``__getitems__`` already returns the stacked batch."""
    return batch
