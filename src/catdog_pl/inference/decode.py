"""Photos to the graph's input, uint8 ``(N, S, S, 3)`` RGB, in batches decoded ahead of the network.

One recipe for every runtime and every consumer (``predict``, :class:`~catdog_pl.inference.predictor.Predictor`,
``serve``): :func:`~catdog_pl.data.images.prepare_image` (JPEG draft, EXIF orientation, RGB, squash with the model's
filter), so a photo gets the same pixels whichever runtime labels it; scaling to [0, 1] and the normalisation happen
inside the network (:class:`~catdog_pl.inference.runners.ProbabilityHead`, or the exported graph). Pillow releases
the GIL while it decodes and resizes, and so do PyTorch and onnxruntime while they compute, so decoding threads
overlap the network in one process. No torch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from catdog_pl.core.errors import ImageError
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, prepare_image, squash, to_rgb

Item = str | os.PathLike | Image.Image


class PhotoInputs:
    """Paths or PIL images to predict, each read as uint8 ``(S, S, 3)``; a file that cannot be read gives zeros
    and its one-line error instead of raising."""

    def __init__(
        self,
        items: Sequence[Item],
        image_size: int,
        interpolation: str = "bilinear",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.items = list(items)
        self.image_size = image_size
        self.interpolation = interpolation
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def name(self, index: int) -> str:
        item = self.items[index]
        return f"<image {index}>" if isinstance(item, Image.Image) else os.fspath(item)

    def read(self, index: int) -> tuple[np.ndarray, str]:
        item, size = self.items[index], self.image_size
        try:
            if isinstance(item, Image.Image):
                return np.asarray(squash(to_rgb(item), size, self.interpolation), dtype=np.uint8), ""
            return prepare_image(item, size, self.interpolation, self.max_pixels), ""
        except ImageError as error:
            return np.zeros((size, size, 3), np.uint8), str(error)

    def batch(self, indices: range) -> tuple[list[int], np.ndarray, list[str]]:
        """``(indices, images (B, S, S, 3), errors)`` of the inputs at ``indices``."""
        read = [self.read(index) for index in indices]
        return list(indices), np.stack([image for image, _ in read]), [error for _, error in read]


def decoded_batches(
    inputs: PhotoInputs, batch_size: int = 32, threads: int = 1
) -> Iterator[tuple[list[int], np.ndarray, list[str]]]:
    """The batches of ``inputs`` in order, decoded by ``threads`` threads (a batch each) up to ``threads + 1``
    batches ahead of the consumer, so that the network runs on one batch while the next ones are read; with
    ``threads=0`` each batch is read in the calling thread when it is asked for."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    spans = [range(start, min(start + batch_size, len(inputs))) for start in range(0, len(inputs), batch_size)]
    if threads < 1:
        yield from (inputs.batch(span) for span in spans)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="catdog-decode") as pool:
        pending: deque[Future] = deque()
        upcoming = iter(spans)
        try:
            for span in upcoming:
                pending.append(pool.submit(inputs.batch, span))
                if len(pending) > threads:
                    break
            while pending:
                batch = pending.popleft().result()
                span = next(upcoming, None)
                if span is not None:
                    pending.append(pool.submit(inputs.batch, span))
                yield batch
        finally:
            for future in pending:
                future.cancel()
