"""How an HTTP request to ``POST /predict`` becomes the network's input, in the HTTP process, and how a client's
error is answered: ``{"error": ...}`` with 400 unreadable image, 413 over the upload limit (bytes, or pixels named
in the image's header), 415 unsupported content type or image format, 422 no ``file``, 503 busy (``Retry-After``).

Every limit bounds memory before the work is done: the body is counted as it arrives and refused with 413 the moment
it passes ``max_bytes`` (at once, from its ``Content-Length``, where the client sends one); it is held once, in a
spooled temporary file (its first megabyte in memory, the rest on disk) that Pillow reads; the image's header is
read before any pixel (Pillow opens only :data:`UPLOAD_FORMATS`, and the pixel count is checked first); at most
``max_decodes`` images are decoded at once, one of them at most larger than :data:`LARGE_DECODE_PIXELS` (a decode
holds about 8.4 bytes a pixel: 210 MB at 25 megapixels, 34 MB at 4); at most ``max_concurrent`` requests are in
the process at once (:class:`RequestLimit`). Each HTTP process keeps its own limits. A bad file is answered here
and never reaches a batch: LitServe fails a whole batch for an ``HTTPException`` raised inside it.
"""

# No ``from __future__ import annotations`` here: FastAPI reads read_upload's annotations at runtime.

import asyncio
import contextlib
import io
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, BinaryIO

import numpy as np
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from catdog_pl.core.errors import ImageError, ImageFormatError, TooManyPixelsError
from catdog_pl.data.images import decode_size, prepare_image, read_image
from catdog_pl.inference.card import ModelCard

#: Content types taken as the image's bytes themselves.
RAW_TYPES = ("image/", "application/octet-stream")
#: The image formats an upload may be in (Pillow's names): what cameras, phones and browsers produce. Every other
#: format Pillow knows (EPS, which runs Ghostscript; PSD, FITS, ...) is refused with 415 before it is opened.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: The defaults of ``serve``'s limits, each process's.
MAX_PIXELS = 25_000_000
MAX_CONCURRENT = 64
MAX_DECODES = 2
#: Decodes of more pixels than this (16 MB as RGBA) wait for the process's one large slot as well as for a slot.
LARGE_DECODE_PIXELS = 4_000_000
#: Bytes of a body kept in memory; the rest of it goes to a temporary file (Starlette's figure for multipart files).
SPOOL_BYTES = 1024 * 1024
#: Seconds a client told 503 is asked to wait.
RETRY_AFTER_S = 1


class Upload:
    """An uploaded file, named in the loader's error messages by ``name`` instead of an address: a binary file
    object (a spooled temporary file: in memory up to :data:`SPOOL_BYTES`, on disk past that) that Pillow reads."""

    def __init__(self, file: BinaryIO, name: str = "upload") -> None:
        self.file, self.name = file, name

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self.file.readline(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class DecodedUpload:
    """An upload read and decoded in the HTTP process: what travels to the inference worker."""

    image: np.ndarray  # uint8 (S, S, 3)
    file: str | None

    def __repr__(self) -> str:  # LitServe formats each request for a debug line, logged or not: no numpy printing
        return f"DecodedUpload(file={self.file!r}, image={self.image.shape})"


@dataclass
class UploadRules:
    """What the HTTP process needs to turn an upload into the network's uint8 input, and its limits.

    Each HTTP process is forked with its own copy: the decode semaphore binds to that process's event loop on first
    use."""

    card: ModelCard
    max_bytes: int
    max_pixels: int = MAX_PIXELS
    max_decodes: int = MAX_DECODES
    formats: tuple[str, ...] = UPLOAD_FORMATS
    decodes: asyncio.Semaphore = field(init=False, repr=False)
    large_decode: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.decodes = asyncio.Semaphore(self.max_decodes)
        self.large_decode = asyncio.Semaphore(1)

    def describe(self) -> dict:
        return {
            "max_upload_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "max_decodes": self.max_decodes,
            "large_decode_pixels": LARGE_DECODE_PIXELS,  # one such decode at a time
            "formats": list(self.formats),
        }


def over_limit(size: int | str, max_bytes: int) -> HTTPException:
    # Connection: close, since the rest of the body is never read.
    return HTTPException(
        413,
        f"upload of {size} bytes is over the limit of {max_bytes:,} bytes",
        headers={"Connection": "close"},
    )


def limited_receive(request: Request, max_bytes: int):
    """``request``'s ASGI ``receive``, raising 413 as soon as the body it has passed on is over ``max_bytes``."""
    size = 0

    async def receive() -> dict:
        nonlocal size
        message = await request.receive()
        size += len(message.get("body", b""))
        if size > max_bytes:
            raise over_limit(f"{size:,}+", max_bytes)
        return message

    return receive


def check_length(request: Request, max_bytes: int) -> None:
    """413 before a byte is read when the body's declared length is over the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise over_limit(f"{int(declared):,}", max_bytes)


def decoded_pixels(upload: Upload, min_size: int | None, max_pixels: int, formats: tuple[str, ...]) -> int:
    """The pixels decoding ``upload`` will produce, from its header (a JPEG is decoded at the smallest DCT scale
    that covers ``min_size``; whole with ``None``), or the :class:`ImageError` that decoding would raise for its
    format or size."""

    def pixels(img: Image.Image) -> int:
        scale = 1
        if img.format == "JPEG" and min_size:
            scale = max(s for s in (1, 2, 4, 8) if s == 1 or min(img.width, img.height) // s >= min_size)
        return -(-img.width // scale) * -(-img.height // scale)

    return read_image(upload, pixels, max_pixels, formats)


@contextlib.asynccontextmanager
async def received(request: Request, media: str, max_bytes: int) -> AsyncIterator[tuple[Upload, str | None]]:
    """The uploaded file and its name (a multipart upload's), held in one spooled temporary file while the context
    lasts: the raw body as it arrives, or the multipart field ``file``, parsed as the body arrives by Starlette."""
    check_length(request, max_bytes)
    if media == "multipart/form-data":
        parts = Request(request.scope, limited_receive(request, max_bytes)).form(max_files=1, max_fields=8)
        async with parts as form:
            upload = form.get("file")
            if upload is None:
                raise HTTPException(422, "missing field 'file': send the photo as the multipart field 'file'")
            if isinstance(upload, str):
                raise HTTPException(422, "field 'file' holds text: send the photo as a file upload")
            yield Upload(upload.file, upload.filename or "upload"), upload.filename or None
        return
    receive = limited_receive(request, max_bytes)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as file:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPException(400, "the client closed the connection before the body ended")
            chunk = message.get("body", b"")
            if file._rolled:  # on disk: written off the event loop, as Starlette writes multipart files
                await run_in_threadpool(file.write, chunk)
            else:
                file.write(chunk)
            if not message.get("more_body", False):
                break
        file.seek(0)
        yield Upload(file), None


async def read_upload(request: Request) -> DecodedUpload:
    """``POST /predict``'s body decoded with ``predict``'s recipe, or the client's error."""
    rules: UploadRules = request.app.state.upload_rules
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data" and not media.startswith(RAW_TYPES):
        raise HTTPException(
            415,
            f"unsupported content type {media or '(none)'}: send multipart/form-data with a 'file' field, or the "
            "image bytes with Content-Type image/* or application/octet-stream",
        )
    card = rules.card
    async with received(request, media, rules.max_bytes) as (upload, name):
        try:
            # The header first (format, pixel limit, what the decode will hold), then a slot to decode in: a large
            # image also takes the process's one large slot, so that the other slots stay for photos.
            min_size = decode_size(card.image_size, card.interpolation)
            pixels = await run_in_threadpool(decoded_pixels, upload, min_size, rules.max_pixels, rules.formats)
            large = rules.large_decode if pixels > LARGE_DECODE_PIXELS else contextlib.nullcontext()
            async with large, rules.decodes:
                image = await run_in_threadpool(
                    prepare_image, upload, card.image_size, card.interpolation, rules.max_pixels, rules.formats
                )
        except TooManyPixelsError as error:
            # The reader's advice names its Python option; a client is told the server's.
            detail = str(error).split(" (decompression-bomb guard")[0]
            raise HTTPException(413, f"{detail} (serve --max_pixels)") from None
        except ImageFormatError as error:
            raise HTTPException(415, str(error)) from None
        except ImageError as error:
            raise HTTPException(400, str(error)) from None
    return DecodedUpload(image, name)


#: The type of ``decode_request``'s argument: LitServe makes it the route's parameter, FastAPI fills it.
UploadedImage = Annotated[DecodedUpload, Depends(read_upload)]


class RequestLimit:
    """ASGI middleware: at most ``limit`` ``POST /predict`` requests in this process at once (reading, decoding,
    waiting for the model); one more is answered 503 with ``Retry-After`` at once, its body unread. Other routes
    (``/health``, ``/info``, the page) are not counted. Each forked HTTP process builds its own."""

    def __init__(self, app, limit: int = MAX_CONCURRENT, path: str = "/predict") -> None:
        self.app, self.limit, self.path = app, limit, path
        self.active = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            busy = JSONResponse(
                {"error": f"busy: {self.limit} requests are being answered; retry in {RETRY_AFTER_S} s"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
            )
            await busy(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def error_response(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


def validation_response(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {error.errors()}"}, status_code=422)
