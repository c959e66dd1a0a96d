"""``python -m catdog_pl serve``: predictions over HTTP, with a web page, batched on the server (LitServe).

Endpoints: ``POST /predict`` (a multipart field ``file``, or the image bytes as the body with an ``image/*`` or
``application/octet-stream`` type) answers ``{"label", "probabilities", "threshold", "file"}``; ``GET /health`` is
503 until the model is loaded, then 200; ``GET /info`` describes the model and the limits; ``GET /`` is the page.

How the work is split: an HTTP process (one per worker by default; they share the port) reads the upload and decodes
it with ``predict``'s recipe (:mod:`catdog_pl.serving.uploads`, where a bad file gets its client error and never
reaches a batch, and the limits on bytes, pixels, formats and concurrent work are kept); an inference worker (one
per core, up to 4) stacks the uint8 images of concurrent requests into one batch for the network. Only the workers
import PyTorch: the main process reads the model card in a process of its own (:mod:`catdog_pl.serving.cards`), so
that the HTTP processes it forks need Pillow and numpy alone.

LitServe 0.2.19 notes, from its source: ``decode_request``'s annotation becomes the route's parameter, so an
``Annotated[..., Depends(...)]`` reads the upload in the HTTP process; ``run()`` waits for the model before opening
the port, which :class:`CatDogServer` changes so that ``/health`` can say 503 meanwhile; its queues between the
processes are a ``multiprocessing.Manager``'s, which :class:`CatDogServer` replaces with pipes; ``/`` and ``/info``
are LitServe's own routes, which ours come before.
"""

# No ``from __future__ import annotations`` here: LitServe and FastAPI read decode_request's annotation at runtime.

import argparse
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import litserve as ls
import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from catdog_pl.compat.litserve import shut_down, use_pipes
from catdog_pl.inference.runtime import open_runner
from catdog_pl.serving.cards import read_card
from catdog_pl.serving.layout import serve_layout
from catdog_pl.serving.uploads import (
    MAX_CONCURRENT,
    MAX_DECODES,
    MAX_PIXELS,
    DecodedUpload,
    RequestLimit,
    UploadedImage,
    UploadRules,
    error_response,
    validation_response,
)

MAIN_PID = os.getpid()
PAGE = Path(__file__).with_name("static") / "index.html"


class CatDogAPI(ls.LitAPI):
    """The inference worker: loads the model in ``setup``, runs batches of decoded images, answers as JSON."""

    def __init__(
        self,
        ckpt_path: str | None,
        onnx_path: str | None,
        max_batch_size: int = 16,
        batch_timeout: float = 0.005,
        threads: int | None = None,
        setup_delay: float = 0.0,
        setup_gate: str | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.ckpt_path, self.onnx_path, self.threads, self.setup_delay = ckpt_path, onnx_path, threads, setup_delay
        self.setup_gate = setup_gate

    def setup(self, device: str) -> None:
        # Both for tests, which watch /health answer 503 meanwhile: a delay, or a file to wait for (at most 10 min).
        time.sleep(self.setup_delay)
        deadline = time.monotonic() + 600
        while self.setup_gate and not os.path.exists(self.setup_gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        # This process is an inference worker LitServe spawned for this API alone, so its thread count is ours to
        # set: several workers share the cores, where PyTorch would give each one a thread per core, whose idle
        # spinning between small batches takes the cores the HTTP processes decode on. None keeps PyTorch's.
        if self.threads and self.ckpt_path:
            import torch  # a checkpoint's worker only: an ONNX file's runs without torch

            torch.set_num_threads(self.threads)
        # A checkpoint here was resolved to PyTorch by serve (an onnxruntime one arrives as its graph's path).
        runtime = "pytorch" if self.ckpt_path else "auto"
        self.runner, self.card = open_runner(self.ckpt_path, self.onnx_path, onnx_threads=self.threads, runtime=runtime)

    def decode_request(self, request: UploadedImage) -> DecodedUpload:
        return request  # decoded in the HTTP process by read_upload

    def batch(self, inputs: list[DecodedUpload]) -> list[DecodedUpload]:
        return inputs

    def predict(
        self, inputs: list[DecodedUpload] | DecodedUpload
    ) -> list[tuple[DecodedUpload, np.ndarray]] | tuple[DecodedUpload, np.ndarray]:
        if isinstance(inputs, DecodedUpload):  # max_batch_size 1: LitServe's unbatched loop
            return self.predict([inputs])[0]
        probabilities = self.runner(np.stack([item.image for item in inputs]))  # (N, S, S, 3) -> (N, C)
        return list(zip(inputs, probabilities, strict=True))

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: tuple[DecodedUpload, np.ndarray]) -> dict:
        item, probabilities = output
        answer = self.card.answer(probabilities)
        if item.file:
            answer["file"] = item.file
        return answer


class CatDogServer(ls.LitServer):
    """A ``LitServer`` that opens its port while the model loads, so that ``/health`` answers 503 meanwhile, and
    passes requests and answers through pipes.

    LitServe 0.2.19's ``run()`` calls ``verify_worker_status`` and waits there for a ready worker before it starts
    uvicorn; its ``/health`` already answers 503 until the workers are ready. Here the wait runs in a thread, which
    shuts the server down if the model cannot be loaded, as LitServe's own wait would.
    """

    setup_failed = False

    def _init_manager(self, num_api_servers: int):
        """LitServe's set-up, then pipes in place of its ``Manager().Queue()``s for requests and answers.

        Every ``put`` and ``get`` on a manager's queue is a round trip to the manager's own process: four a request
        (the HTTP process submits it, the worker takes it, answers, and the HTTP process reads the answer), plus one
        for each poll while a worker fills its batch. A ``multiprocessing.Queue`` is a pipe between the processes;
        the spawned workers and the forked HTTP processes receive it when they start, as they received the
        manager's. The manager's own queues, made by LitServe's set-up, stay unused. This server leaves LitServe's
        ``restart_workers`` off: a worker killed inside a pipe's ``get`` keeps its lock, and a new one would wait on it.
        """
        manager = super()._init_manager(num_api_servers)
        use_pipes(self, num_api_servers)
        return manager

    def verify_worker_status(self) -> None:
        threading.Thread(target=self._wait_for_workers, name="catdog-setup", daemon=True).start()

    def _wait_for_workers(self) -> None:
        try:
            super().verify_worker_status()
        except RuntimeError:
            self.setup_failed = True
            shut_down(self)


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
    threads: int | None = None,
    api_servers: int = 1,
    setup_delay: float = 0.0,
    max_pixels: int = MAX_PIXELS,
    max_concurrent: int = MAX_CONCURRENT,
    max_decodes: int = MAX_DECODES,
    setup_gate: str | None = None,
    runtime: str = "auto",
) -> CatDogServer:
    """The server, its routes and its rules; the model is read once for ``/info`` (in a process of its own:
    :func:`~catdog_pl.serving.cards.read_card`, which also exports a checkpoint's graph for onnxruntime once) and
    loaded by the workers. ``api_servers`` only goes into ``/info``: ``run(num_api_servers=...)`` starts them. The
    limits hold in each HTTP process."""
    card, graph = read_card(ckpt_path, onnx_path, runtime)
    if graph is not None and onnx_path is None:  # a checkpoint's cached graph: the workers open the file alone
        ckpt_path, onnx_path = None, graph
    api = CatDogAPI(ckpt_path, onnx_path, max_batch_size, batch_timeout, threads, setup_delay, setup_gate)
    server = CatDogServer(api, accelerator="cpu", workers_per_device=workers, info_path="/litserve/info")
    server.uvicorn_graceful_timeout = 5
    app = server.app
    rules = UploadRules(card, int(max_upload_mb * 1024 * 1024), max_pixels, max_decodes)
    app.state.upload_rules = rules
    app.add_middleware(RequestLimit, limit=max_concurrent)
    app.add_exception_handler(StarletteHTTPException, error_response)
    app.add_exception_handler(RequestValidationError, validation_response)
    info = {
        "classes": list(card.class_names),
        "labels": card.labels,
        "image_size": card.image_size,
        "backbone": card.backbone,
        "test_acc": card.test_acc,
        "test": card.test,
        "threshold": card.threshold,
        "resize": card.resize_recipe(),
        "catdog_pl_version": card.version,
        "runtime": "onnxruntime" if onnx_path else "pytorch",
        **rules.describe(),
        "max_concurrent": max_concurrent,
        "max_batch_size": max_batch_size,
        "workers": workers,
        "threads_per_worker": threads,
        "api_servers": api_servers,
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


def positive(text: str) -> int:
    """argparse's type for a count of processes or threads."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def pixels(text: str) -> int:
    """argparse's type for a pixel count: ``25000000``, ``25_000_000`` or ``25e6``."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = 0.0
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}")
    return int(value)


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catdog_pl serve",
        description="Serve a checkpoint or an exported ONNX file over HTTP: POST /predict (multipart field 'file', "
        "or the image bytes), GET /health, GET /info, and a web page at /.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="a catdog_pl checkpoint (or an .onnx file), run as --runtime says")
    source.add_argument("--onnx", help="a model.onnx from `python -m catdog_pl export`, run with onnxruntime")
    parser.add_argument(
        "--runtime", default="auto", choices=("auto", "onnx", "pytorch"),
        help="a checkpoint's runtime: its graph on onnxruntime (exported once, cached beside it) or PyTorch; auto: "
        "onnxruntime on a CPU (default: auto)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "0.0.0.0", "::"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_upload_mb", type=float, default=20.0, help="larger uploads get 413 (default: 20)")
    parser.add_argument(
        "--max_pixels",
        type=pixels,
        default=MAX_PIXELS,
        help="images whose header names more pixels get 413, before decoding (default: 25,000,000)",
    )
    parser.add_argument(
        "--max_concurrent",
        type=positive,
        default=MAX_CONCURRENT,
        help=f"POST /predict requests an HTTP process takes at once; more get 503 with Retry-After "
        f"(default: {MAX_CONCURRENT})",
    )
    parser.add_argument(
        "--max_decodes",
        type=positive,
        default=MAX_DECODES,
        help=f"images an HTTP process decodes at once; the others wait (default: {MAX_DECODES})",
    )
    parser.add_argument("--max_batch_size", type=int, default=16, help="requests batched together (default: 16)")
    parser.add_argument(
        "--batch_timeout", type=float, default=0.005, help="seconds a batch waits to fill up (default: 0.005)"
    )
    parser.add_argument("--workers", type=positive, help="inference processes (default: one per core, at most 4)")
    parser.add_argument(
        "--threads", type=positive, help="PyTorch/onnxruntime threads a worker (default: cores / workers, at least 1)"
    )
    parser.add_argument(
        "--api_servers", type=positive, help="HTTP processes, which read and decode the uploads (default: one a worker)"
    )
    parser.add_argument("--log_level", default="warning", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--setup_delay", type=float, default=0.0, help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--setup_gate", help=argparse.SUPPRESS)  # tests only: the workers wait for this file
    options = parser.parse_args(args)
    workers, threads = serve_layout(options.workers, options.threads)
    api_servers = options.api_servers or workers  # LitServe's own default
    server = build_server(
        options.ckpt_path,
        options.onnx,
        options.max_upload_mb,
        options.max_batch_size,
        options.batch_timeout,
        workers,
        threads,
        api_servers,
        options.setup_delay,
        options.max_pixels,
        options.max_concurrent,
        options.max_decodes,
        options.setup_gate,
        options.runtime,
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
        num_api_servers=api_servers,
    )
    if server.setup_failed:
        raise SystemExit("catdog_pl: error: the model could not be loaded (the worker's error is above)")
