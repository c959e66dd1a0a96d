"""``python -m catdog_pl serve``: predictions over HTTP, with a web page, batched on the server (LitServe).

Endpoints: ``POST /predict`` (a multipart field ``file``, or the image bytes as the body with an ``image/*`` or
``application/octet-stream`` type) answers ``{"label", "probabilities", "threshold", "file"}``; ``GET /health`` is
503 until the model is loaded, then 200; ``GET /info`` describes the model; ``GET /`` is the page.

How the work is split: the HTTP process reads the upload and decodes it with ``predict``'s recipe
(:func:`~catdog_pl.runtime.prepare_image`), so a bad file is answered there (400) and never reaches a batch; the
inference worker stacks the uint8 images of concurrent requests into one batch for the network. Client errors are
``{"error": ...}``: 400 unreadable image, 413 over the upload limit, 415 unsupported content type, 422 no ``file``.

LitServe 0.2.19 notes, from its source: ``decode_request``'s annotation becomes the route's parameter, so an
``Annotated[..., Depends(...)]`` reads the upload in the HTTP process; an ``HTTPException`` raised inside a batch
fails the whole batch, hence the decoding before it; ``run()`` waits for the model before opening the port, which
:class:`CatDogServer` changes so that ``/health`` can say 503 meanwhile; ``/`` and ``/info`` are LitServe's own
routes, which ours come before.
"""

# No ``from __future__ import annotations`` here: LitServe and FastAPI read decode_request's annotation at runtime.

import argparse
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import litserve as ls
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from catdog_pl.errors import ImageError
from catdog_pl.runtime import ModelCard, Upload, open_runner, prepare_image

MAIN_PID = os.getpid()
PAGE = Path(__file__).with_name("static") / "index.html"
#: Content types taken as the image's bytes themselves.
RAW_TYPES = ("image/", "application/octet-stream")


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


async def read_upload(request: Request) -> dict:
    """``POST /predict``'s body as ``{"image": uint8 (S, S, 3), "file": name or None}``, or the client's error."""
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
    return {"image": image, "file": name}


#: The type of ``decode_request``'s argument: LitServe makes it the route's parameter, FastAPI fills it.
UploadedImage = Annotated[dict, Depends(read_upload)]


class CatDogAPI(ls.LitAPI):
    """The inference worker: loads the model in ``setup``, runs batches of decoded images, answers as JSON."""

    def __init__(
        self,
        ckpt_path: str | None,
        onnx_path: str | None,
        max_batch_size: int = 16,
        batch_timeout: float = 0.005,
        setup_delay: float = 0.0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.ckpt_path, self.onnx_path, self.setup_delay = ckpt_path, onnx_path, setup_delay

    def setup(self, device: str) -> None:
        time.sleep(self.setup_delay)  # 0 but in tests, which watch /health answer 503 meanwhile
        self.runner, self.card = open_runner(self.ckpt_path, self.onnx_path)

    def decode_request(self, request: UploadedImage) -> dict:
        return request  # decoded in the HTTP process by read_upload

    def batch(self, inputs: list[dict]) -> list[dict]:
        return inputs

    def predict(self, inputs: list[dict] | dict) -> list[tuple[dict, np.ndarray]] | tuple[dict, np.ndarray]:
        if isinstance(inputs, dict):  # max_batch_size 1: LitServe's unbatched loop
            return self.predict([inputs])[0]
        probabilities = self.runner(np.stack([item["image"] for item in inputs]))  # (N, S, S, 3) -> (N, C)
        return list(zip(inputs, probabilities, strict=True))

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: tuple[dict, np.ndarray]) -> dict:
        item, probabilities = output
        answer = self.card.answer(probabilities)
        if item["file"]:
            answer["file"] = item["file"]
        return answer


class CatDogServer(ls.LitServer):
    """A ``LitServer`` that opens its port while the model loads, so that ``/health`` answers 503 meanwhile.

    LitServe 0.2.19's ``run()`` calls ``verify_worker_status`` and waits there for a ready worker before it starts
    uvicorn; its ``/health`` already answers 503 until the workers are ready. Here the wait runs in a thread, which
    shuts the server down if the model cannot be loaded, as LitServe's own wait would.
    """

    setup_failed = False

    def verify_worker_status(self) -> None:
        threading.Thread(target=self._wait_for_workers, name="catdog-setup", daemon=True).start()

    def _wait_for_workers(self) -> None:
        try:
            super().verify_worker_status()
        except RuntimeError:
            self.setup_failed = True
            self._shutdown_event.set()


def error_response(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


def validation_response(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {error.errors()}"}, status_code=422)


def add_route_first(app: FastAPI, path: str, endpoint, methods: Sequence[str] = ("GET",)) -> None:
    """Add a route ahead of those already there (LitServe's own ``/``), since the first match answers."""
    app.add_api_route(path, endpoint, methods=list(methods))
    app.router.routes.insert(0, app.router.routes.pop())


def build_server(
    ckpt_path: str | None = None,
    onnx_path: str | None = None,
    max_upload_mb: float = 20.0,
    max_batch_size: int = 16,
    batch_timeout: float = 0.005,
    workers: int = 1,
    setup_delay: float = 0.0,
    fast_queue: bool = False,
) -> CatDogServer:
    """The server, its routes and its rules; the model is read here once for ``/info`` and loaded by the worker."""
    runner, card = open_runner(ckpt_path, onnx_path)
    del runner  # the worker loads its own
    api = CatDogAPI(ckpt_path, onnx_path, max_batch_size, batch_timeout, setup_delay)
    server = CatDogServer(
        api, accelerator="cpu", workers_per_device=workers, info_path="/litserve/info", fast_queue=fast_queue
    )
    server.uvicorn_graceful_timeout = 5
    app = server.app
    app.state.upload_rules = UploadRules(card, int(max_upload_mb * 1024 * 1024))
    app.add_exception_handler(StarletteHTTPException, error_response)
    app.add_exception_handler(RequestValidationError, validation_response)
    info = {
        "classes": list(card.class_names),
        "labels": card.labels,
        "image_size": card.image_size,
        "backbone": card.backbone,
        "test_acc": card.test_acc,
        "threshold": card.threshold,
        "resize": card.resize_recipe(),
        "catdog_pl_version": card.version,
        "runtime": "onnxruntime" if onnx_path else "pytorch",
        "max_upload_bytes": app.state.upload_rules.max_bytes,
        "max_batch_size": max_batch_size,
    }

    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    async def model_info() -> JSONResponse:
        return JSONResponse(info)

    add_route_first(app, "/", page)
    add_route_first(app, "/info", model_info)
    return server


def stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM in the main process: LitServe's Ctrl+C path. Forked children (uvicorn) keep the default action."""
    if os.getpid() != MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    signal.signal(signum, signal.SIG_IGN)  # once is enough: a second one would interrupt the shutdown itself
    raise KeyboardInterrupt


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catdog_pl serve",
        description="Serve a checkpoint or an exported ONNX file over HTTP: POST /predict (multipart field 'file', "
        "or the image bytes), GET /health, GET /info, and a web page at /.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="a catdog_pl checkpoint, run with PyTorch")
    source.add_argument("--onnx", help="a model.onnx from `python -m catdog_pl export`, run with onnxruntime")
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "0.0.0.0", "::"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_upload_mb", type=float, default=20.0, help="larger uploads get 413 (default: 20)")
    parser.add_argument("--max_batch_size", type=int, default=16, help="requests batched together (default: 16)")
    parser.add_argument(
        "--batch_timeout", type=float, default=0.005, help="seconds a batch waits to fill up (default: 0.005)"
    )
    parser.add_argument("--workers", type=int, default=1, help="inference processes (default: 1)")
    parser.add_argument("--fast_queue", action="store_true", help="LitServe's ZeroMQ queue (needs pyzmq)")
    parser.add_argument("--log_level", default="warning", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--setup_delay", type=float, default=0.0, help=argparse.SUPPRESS)  # tests only
    options = parser.parse_args(args)
    server = build_server(
        options.ckpt_path,
        options.onnx,
        options.max_upload_mb,
        options.max_batch_size,
        options.batch_timeout,
        options.workers,
        options.setup_delay,
        options.fast_queue,
    )
    # SIGTERM (a service manager's, a test's) shuts LitServe down as Ctrl+C does: workers stopped, port freed.
    signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    url = f"http://{'127.0.0.1' if options.host == '0.0.0.0' else options.host}:{options.port}/"
    print(f"catdog_pl serve: {url} (the page), POST {url}predict, GET {url}health; Ctrl+C stops", flush=True)
    server.run(
        host=options.host,
        port=options.port,
        log_level=options.log_level,
        generate_client_file=False,
        access_log=options.log_level in ("debug", "info"),
    )
    if server.setup_failed:
        raise SystemExit("catdog_pl: error: the model could not be loaded (the worker's error is above)")
