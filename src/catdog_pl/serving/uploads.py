"""How an HTTP request to ``POST /predict`` becomes the network's input, in the HTTP process, and how a client's
error is answered: ``{"error": ...}`` with 400 unreadable image, 413 over the upload limit, 415 unsupported content
type, 422 no ``file``.

A bad file is answered here and never reaches a batch: LitServe fails a whole batch for an ``HTTPException`` raised
inside it.
"""

# No ``from __future__ import annotations`` here: FastAPI reads read_upload's annotations at runtime.

import io
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from catdog_pl.core.errors import ImageError
from catdog_pl.data.images import prepare_image
from catdog_pl.inference.card import ModelCard

#: Content types taken as the image's bytes themselves.
RAW_TYPES = ("image/", "application/octet-stream")


class Upload(io.BytesIO):
    """An uploaded file in memory, named in the loader's error messages by ``name`` instead of an address."""

    def __init__(self, data: bytes, name: str = "upload") -> None:
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class DecodedUpload:
    """An upload read and decoded in the HTTP process: what travels to the inference worker."""

    image: np.ndarray  # uint8 (S, S, 3)
    file: str | None

    def __repr__(self) -> str:  # LitServe formats each request for a debug line, logged or not: no numpy printing
        return f"DecodedUpload(file={self.file!r}, image={self.image.shape})"


@dataclass(frozen=True)
class UploadRules:
    """What the HTTP process needs to turn an upload into the network's uint8 input."""

    card: ModelCard
    max_bytes: int


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, or 413 once it passes ``max_bytes`` (the rest is drained, up to 4x, so the client reads
    the answer instead of a reset connection)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
        elif size > 4 * max_bytes:
            break
    if size > max_bytes:
        raise HTTPException(413, f"upload of {size:,}+ bytes is over the limit of {max_bytes:,} bytes")
    return b"".join(chunks)


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
    body = await read_body(request, rules.max_bytes)
    name = None
    if media == "multipart/form-data":

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async with Request(request.scope, replay).form(max_files=1) as form:
            upload = form.get("file")
            if upload is None:
                raise HTTPException(422, "missing field 'file': send the photo as the multipart field 'file'")
            if isinstance(upload, str):
                raise HTTPException(422, "field 'file' holds text: send the photo as a file upload")
            name = upload.filename or None
            body = await upload.read()
    try:
        card = rules.card
        image = await run_in_threadpool(
            prepare_image, Upload(body, name or "upload"), card.image_size, card.interpolation
        )
    except ImageError as error:
        raise HTTPException(400, str(error)) from None
    return DecodedUpload(image, name)


#: The type of ``decode_request``'s argument: LitServe makes it the route's parameter, FastAPI fills it.
UploadedImage = Annotated[DecodedUpload, Depends(read_upload)]


def error_response(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


def validation_response(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {error.errors()}"}, status_code=422)
