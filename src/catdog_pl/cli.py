"""The command line: ``fit``, ``validate``, ``test`` and ``predict`` (:mod:`catdog_pl.lightning_cli`, a
``LightningCLI``), and the subcommands beside it (``prepare``, ``report``, ``export``, ``serve``), each imported only
when asked for: ``serve --onnx`` runs without torch or Lightning, and ``serve`` and ``export`` need optional extras."""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from catdog_pl.core.errors import CatDogError

if TYPE_CHECKING:
    from catdog_pl.lightning_cli import CatDogCLI

# Warnings from the libraries that a user of the command line can do nothing about, each matched by its text and
# category; `main` hides them, so that what it prints is worth reading.
KNOWN_WARNINGS = (
    # Lightning's model summary has no size for "bf16-mixed" and says so on every fit; it then counts 32 bits a
    # parameter, which is what mixed precision stores them in.
    (r"Precision bf16-mixed is not supported by the model summary", UserWarning),
    # torch 2.14 deprecates the LeafSpec that Lightning 2.6's CombinedLoader builds for every loop
    # (Lightning-AI/pytorch-lightning#21326).
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)
DESCRIPTION = (
    "Train an image classifier from a folder of photos, look at what it learned, and use it on new photos. "
    "Subcommands: fit, validate, test and predict (below); prepare, which downloads the full public data set into "
    "the expected layout; report, which draws a run as PNGs and a Markdown page; export, which writes an ONNX file; "
    "serve, an HTTP service with a web page; and lr_find, which plots loss against learning rate for a config "
    "(python -m catdog_pl prepare --help, and so on)."
)
#: Subcommands beside LightningCLI's -> the module whose ``main(args)`` runs them (``module:function`` for another).
OWN_SUBCOMMANDS = {
    "prepare": "catdog_pl.data.prepare",
    "report": "catdog_pl.reporting.report",
    "export": "catdog_pl.inference.export",
    "serve": "catdog_pl.serving.server",
    "lr_find": "catdog_pl.lightning_cli:lr_find_main",
}
#: Lightning's INFO records that advertise a service rather than say something about the run, matched by text.
ADVERTS = ("try installing [litlogger]",)


class DropAdverts(logging.Filter):
    """Drops Lightning's advert for its cloud logger ("Tip: For seamless cloud logging ... litlogger"), an INFO
    record that every fit printed; the rest of Lightning's output stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(advert in record.getMessage() for advert in ADVERTS)


def __getattr__(name: str) -> object:
    # CatDogCLI and its helpers, the command line's before 0.3, from their module (imported on first use).
    if name in ("CatDogCLI", "SaveConfigWithRun", "continue_run_folder", "SEED"):
        return getattr(importlib.import_module("catdog_pl.lightning_cli"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def quiet_known_warnings() -> None:
    """Hide ``KNOWN_WARNINGS`` in this process (the command line's: importing catdog_pl changes no filter)."""
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def drop_adverts() -> None:
    """Put :class:`DropAdverts` on the logger of Lightning's rank-zero messages, once."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(existing, DropAdverts) for existing in logger.filters):
        logger.addFilter(DropAdverts())


def without_runtime(argv: list[str]) -> list[str]:
    """``argv`` without ``--runtime X`` (``--runtime=X``), an option of predict that Lightning does not know."""
    kept, skip = [], False
    for index, token in enumerate(argv):
        if skip:
            skip = False
        elif token == "--runtime" and index + 1 < len(argv):
            skip = True
        elif not token.startswith("--runtime="):
            kept.append(token)
    return kept


def main(args: Sequence[str] | None = None) -> CatDogCLI | None:
    """Run the CLI on ``args`` (``sys.argv[1:]`` when ``None``); problems with the user's files exit with one line."""
    argv = sys.argv[1:] if args is None else list(args)
    command = argv[0] if argv else None
    quiet_known_warnings()
    drop_adverts()
    try:
        # predict on onnxruntime (an .onnx model, or a checkpoint's cached graph on a CPU) needs neither Lightning nor,
        # for a fresh graph, torch: it is routed before either is imported (catdog_pl.inference.graph_predict).
        if command == "predict" and importlib.import_module("catdog_pl.inference.graph_predict").main(argv[1:]):
            return None
        if command == "predict":
            argv = without_runtime(argv)  # Lightning's predict is the PyTorch runtime
        if command != "serve":  # serve's workers are processes of their own, and an ONNX file's need no torch
            import torch

            # Denormal floats to zero before any tensor work (PyTorch's CPU threads take the mode from this thread
            # when they start): Adam's moment estimates turn denormal late in a run, and its step was then 5-10x
            # slower.
            torch.set_flush_denormal(True)
        if command in OWN_SUBCOMMANDS:
            module, _, function = OWN_SUBCOMMANDS[command].partition(":")
            getattr(importlib.import_module(module), function or "main")(argv[1:])
            return None
        from catdog_pl.lightning_cli import run_lightning_cli

        return run_lightning_cli(argv if command == "predict" else args, DESCRIPTION)
    except CatDogError as error:
        print(f"catdog_pl: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
