"""The model card ``serve``'s HTTP side needs (classes, input size, resize recipe, accuracy), read in a process of
its own: reading a checkpoint takes PyTorch, and the HTTP processes, forked from ``serve``'s main process, would
carry it all their lives (about 400 MB each, resident) for nothing but decoding uploads."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from catdog_pl.inference.card import ModelCard
from catdog_pl.inference.runtime import open_runner


def card_of(ckpt_path: str | os.PathLike | None, onnx_path: str | os.PathLike | None) -> ModelCard:
    """The card of a checkpoint or ONNX file, read in this process (the model is loaded, checked, then dropped)."""
    return open_runner(ckpt_path, onnx_path)[1]


def read_card(ckpt_path: str | os.PathLike | None, onnx_path: str | os.PathLike | None) -> ModelCard:
    """:func:`card_of` in a spawned process that exits once it has answered; its errors are raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(card_of, ckpt_path, onnx_path).result()
