"""Reading photos: one loader for every stage, fast for JPEGs, tolerant of modes and orientation, and clear about
the files it cannot read."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from catdog_pl.core.errors import ImageError, ImageFormatError, TooManyPixelsError
from catdog_pl.core.resample import RESAMPLE

#: Suffixes taken as images when a folder is listed (any case). Content decides whether a file really is one.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

T = TypeVar("T")

#: PIL's decompression-bomb limit (about 89 megapixels), the default for ``max_pixels``.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def load_rgb(
    path: str | os.PathLike,
    min_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> Image.Image:
    """Open an image as 8-bit RGB, the way every stage sees it, or raise :class:`ImageError` naming the file.

    JPEGs are decoded with ``Image.draft`` straight to the smallest DCT scale (1/2, 1/4, 1/8) that still covers
    ``min_size`` on both sides, several times faster than a full decode for a 64-px network. EXIF orientation is
    applied; any mode (L, LA, P, RGBA, CMYK, 16-bit) becomes RGB; GIFs give their first frame. Images of more than
    ``max_pixels`` pixels are refused before they are decoded (PIL's decompression-bomb guard; to go above PIL's
    own limit, raise ``PIL.Image.MAX_IMAGE_PIXELS`` too). ``formats`` (Pillow's names, ``("JPEG", "PNG")``) are
    the only ones opened, when given.
    """

    def decode(img: Image.Image) -> Image.Image:
        if min_size is not None and img.format == "JPEG":
            # draft keeps both sides >= the request; a square request is unaffected by EXIF rotation.
            img.draft("RGB", (min_size, min_size))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # not in place, an upright image is copied whole
        return to_rgb(img)

    return read_image(path, decode, max_pixels, formats)


def squash(img: Image.Image, side: int, interpolation: str = "bilinear") -> Image.Image:
    """``img`` resized to ``side`` x ``side`` (the aspect ratio is not kept, as Keras's ``target_size``), with PIL's
    antialiased ``bilinear`` or ``bicubic`` filter, or ``nearest`` (Keras's ``load_img``: no antialiasing): what the
    eval transform does to every photo."""
    return img.resize((side, side), RESAMPLE[interpolation])


def decode_size(side: int, interpolation: str = "bilinear") -> int | None:
    """``load_rgb``'s ``min_size`` for a photo squashed to ``side`` with ``interpolation``: ``side`` (a JPEG draft,
    fast), or ``None`` for ``nearest``, which decodes the whole photo as Keras's ``load_img`` does: a draft's DCT
    scaling averages the pixels that nearest-neighbour would pick one by one, and so would blur the aliasing."""
    return None if interpolation == "nearest" else side


def verify_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """The fast check: the header and PIL's ``verify()``, no decode; raises :class:`ImageError` naming the file."""
    read_image(path, lambda img: img.verify(), max_pixels)


def read_image(
    path: str | os.PathLike,
    use: Callable[[Image.Image], T],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> T:
    """Open ``path`` and return ``use(image)``, with the checks every reader shares: an empty file, PIL's
    decompression-bomb guard and ``max_pixels`` are refused before decoding (:class:`TooManyPixelsError`), a format
    not in ``formats`` (when given) is never opened (:class:`ImageFormatError`), and any failure becomes one
    :class:`ImageError` that starts with the path and says why. ``path`` may be a binary file object (an upload,
    ``io.BytesIO`` or a temporary file): its ``str()`` then names it in the messages."""
    try:
        if byte_size(path) == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as img:
                pixels = img.width * img.height
                if pixels > max_pixels:
                    raise TooManyPixelsError(
                        f"{path}: {img.width}x{img.height} = {pixels:,} pixels is over the limit of {max_pixels:,} "
                        "(decompression-bomb guard; raise max_image_pixels if the file is genuine)"
                    )
                return use(img)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        known = formats and format_of(path)
        if known:
            raise ImageFormatError(f"{path}: {known} images are not accepted (only {', '.join(formats)})") from None
        raise ImageError(f"{path}: not an image file (no known image format in its content)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise TooManyPixelsError(
            f"{path}: too many pixels, refused as a possible decompression bomb ({error})"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: truncated or corrupt image ({error})") from None
    except Exception as error:  # PIL's plugins raise other types too (struct.error, ...): still this file's fault
        raise ImageError(f"{path}: unreadable ({type(error).__name__}: {error})") from None


def byte_size(source: str | os.PathLike | BinaryIO) -> int:
    """The size of a file, or of a binary file object (left at its start)."""
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes
    if hasattr(source, "read"):
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        return size
    return os.path.getsize(source)


def format_of(source: str | os.PathLike | BinaryIO) -> str | None:
    """The Pillow format whose signature the first bytes of ``source`` carry, or ``None``: read from the prefix by
    each plugin's own check, nothing opened or decoded (to name a format that was refused)."""
    try:
        if hasattr(source, "read"):
            source.seek(0)
            prefix = source.read(64)
            source.seek(0)
        else:
            with open(source, "rb") as handle:
                prefix = handle.read(64)
        Image.init()
        for name, (_, accept) in Image.OPEN.items():
            if accept is not None and accept(prefix):
                return name
    except Exception:  # a plugin's check that fails on odd bytes names nothing
        return None
    return None


#: Pixels converted to RGB at a time: a large image that is not RGB is converted a band of rows at a time, so that
#: its conversion needs only the RGB result beside the decoded image (a 25-megapixel RGBA PNG: 75 MB, not 400).
BAND_PIXELS = 1 << 20


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16- and 32-bit integer images are scaled down, not clipped. Each pixel's
    colour depends on that pixel alone, so a large image is converted in bands of rows (:data:`BAND_PIXELS`)."""
    if img.mode == "RGB":
        return img
    peak = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        peak = 65535.0 if img.getextrema()[1] > 255 else 255.0  # the whole image's, as one conversion would
    if img.width * img.height <= BAND_PIXELS:
        return _to_rgb(img, peak)
    rgb = Image.new("RGB", img.size)
    rows = max(1, BAND_PIXELS // img.width)
    for top in range(0, img.height, rows):
        box = (0, top, img.width, min(top + rows, img.height))
        rgb.paste(_to_rgb(img.crop(box), peak), box)
    return rgb


def _to_rgb(img: Image.Image, peak: float | None) -> Image.Image:
    if peak is not None:
        array = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite transparent pixels on white, as image viewers show them, rather than on black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def prepare_image(
    source: str | os.PathLike | io.BytesIO,
    image_size: int,
    interpolation: str = "bilinear",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> np.ndarray:
    """A photo as the network's input before scaling: uint8 ``(S, S, 3)`` RGB; raises :class:`ImageError`."""
    img = load_rgb(source, min_size=decode_size(image_size, interpolation), max_pixels=max_pixels, formats=formats)
    return np.asarray(squash(img, image_size, interpolation), dtype=np.uint8)
