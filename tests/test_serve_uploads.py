"""How serve reads an upload, without a server: formats refused unopened, pixels refused undecoded, and the
conversion to RGB in bands, pixel for pixel the whole image's, in a fraction of its memory."""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from catdog_pl.core.errors import ImageError, ImageFormatError, TooManyPixelsError
from catdog_pl.data import images
from catdog_pl.data.images import BAND_PIXELS, prepare_image, to_rgb

from . import abuse

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def whole_image_rgb(img: Image.Image) -> np.ndarray:
    """The conversion of the image at once, as before bands."""
    peak = None
    if img.mode in ("I;16", "I"):
        peak = 65535.0 if img.getextrema()[1] > 255 else 255.0
    return np.asarray(images._to_rgb(img, peak))


def modes(width: int, height: int) -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    palette = rgba.convert("RGB").quantize(64)
    transparent = palette.copy()
    transparent.info["transparency"] = 3
    return {
        "RGBA": rgba,
        "LA": rgba.convert("LA"),
        "PA": palette.convert("PA"),
        "P with transparency": transparent,
        "P": palette,
        "CMYK": rgba.convert("CMYK"),
        "L": rgba.convert("L"),
        "I;16": Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16)),
        "I": Image.fromarray(rng.integers(-5, 70_000, (height, width)).astype(np.int32)),
    }


@pytest.mark.parametrize("mode", list(modes(4, 4)))
def test_rgb_in_bands_is_the_whole_images_conversion(mode):
    img = modes(1500, 900)[mode]  # 1.35 megapixels: two bands
    assert img.width * img.height > BAND_PIXELS
    banded = np.asarray(to_rgb(img))
    assert banded.shape == (900, 1500, 3) and np.array_equal(banded, whole_image_rgb(img))


@pytest.mark.parametrize(("data", "name"), [(abuse.eps(), "EPS"), (abuse.psd(), "PSD")], ids=["EPS", "PSD"])
def test_a_format_outside_the_list_is_refused_unopened(data, name):
    with pytest.raises(ImageFormatError, match=f"upload.bin: {name} images are not accepted"):
        prepare_image(named(data), 64, formats=FORMATS)


def test_bytes_of_no_format_are_not_an_image_and_listed_formats_open():
    with pytest.raises(ImageError, match="not an image file") as error:
        prepare_image(named(b"these are not pixels" * 10), 64, formats=FORMATS)
    assert not isinstance(error.value, ImageFormatError)
    for fmt in FORMATS:
        buffer = io.BytesIO()
        Image.new("RGB", (80, 60), (200, 100, 50)).save(buffer, format=fmt)
        assert prepare_image(named(buffer.getvalue()), 64, formats=FORMATS).shape == (64, 64, 3)


def test_pixels_over_the_limit_are_refused_from_the_header():
    """A 100-megapixel JPEG header with 8 x 8 pixels of data: refused for its size, not for its missing data."""
    with pytest.raises(TooManyPixelsError, match="100000000 pixels"):
        prepare_image(named(abuse.jpeg_header(10_000, 10_000)), 64, max_pixels=25_000_000, formats=FORMATS)
    with pytest.raises(TooManyPixelsError, match="over the limit of 25,000,000"):
        prepare_image(named(abuse.jpeg_header(6000, 5000)), 64, max_pixels=25_000_000, formats=FORMATS)


class Named(io.BytesIO):
    def __str__(self) -> str:
        return "upload.bin"


def named(data: bytes) -> io.BytesIO:
    return Named(data)


DECODE_PEAK = """
import sys
from catdog_pl.data.images import prepare_image

def status(field):  # kB; VmHWM is this process's peak since exec (ru_maxrss would carry its parent's)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

before = status("VmRSS:")
with open(sys.argv[1], "rb") as upload:
    prepare_image(upload, 64, max_pixels=25_000_000, formats=("PNG",))
print((status("VmHWM:") - before) * 1024)
"""


def test_a_25_megapixel_rgba_png_decodes_in_little_more_than_its_pixels():
    """5,000 x 4,990 half-transparent RGBA: 100 MB decoded, 75 MB as RGB. Converted whole, and with EXIF's copy,
    the decode peaked 477 MB over the process's start; now the image and its RGB result, about 200 MB."""
    with tempfile.NamedTemporaryFile(suffix=".png") as png:
        png.write(abuse.rgba_png(5000, 4990))
        png.flush()
        out = subprocess.run([sys.executable, "-c", DECODE_PEAK, png.name], capture_output=True, text=True, check=True)
    growth = int(out.stdout.split()[-1])
    assert 150 * 2**20 < growth < 260 * 2**20


def test_the_decode_cost_is_read_from_the_header():
    """What decides whether a decode needs the process's one large slot: a 12-megapixel JPEG decodes at 1/8 scale
    for a 64 px network (187,500 pixels), a PNG at full size."""
    pytest.importorskip("litserve", reason="the [serve] extra is not installed")
    from catdog_pl.serving.uploads import LARGE_DECODE_PIXELS, decoded_pixels

    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(jpeg, format="JPEG")
    Image.new("RGB", (2500, 2000), (90, 90, 90)).save(png, format="PNG")
    assert decoded_pixels(named(jpeg.getvalue()), 64, 25_000_000, FORMATS) == 500 * 375
    assert decoded_pixels(named(jpeg.getvalue()), 2000, 25_000_000, FORMATS) == 4000 * 3000
    assert decoded_pixels(named(png.getvalue()), 64, 25_000_000, FORMATS) == 2500 * 2000 > LARGE_DECODE_PIXELS
    with pytest.raises(ImageFormatError):
        decoded_pixels(named(abuse.eps()), 64, 25_000_000, FORMATS)
