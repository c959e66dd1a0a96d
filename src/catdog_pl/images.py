"""Reading photos: one loader for every stage, fast for JPEGs, tolerant of modes and orientation."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps


def load_rgb(path: str | os.PathLike, min_size: int | None = None) -> Image.Image:
    """Open an image as RGB, the way every stage sees it.

    JPEGs are decoded with ``Image.draft`` straight to the smallest DCT scale (1/2, 1/4, 1/8) that still covers
    ``min_size`` on both sides, which is several times faster than a full decode for a 64-px network. EXIF
    orientation is applied, and any mode (L, LA, P, RGBA, CMYK, 16-bit) is converted to RGB.
    """
    with Image.open(path) as img:
        if min_size is not None and img.format == "JPEG":
            # draft keeps both sides >= the request; rotated EXIF swaps them, a square request is unaffected.
            img.draft("RGB", (min_size, min_size))
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16- and 32-bit integer images are scaled down, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite transparent pixels on white, as image viewers show them, rather than on black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
