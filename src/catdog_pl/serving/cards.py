"""The model card ``serve``'s HTTP side needs (classes, input size, resize recipe, accuracy), read in a process of
its own: reading a checkpoint takes PyTorch, and the HTTP processes, forked from ``serve``'s main process, would
carry it all their lives (about 400 MB each, resident) for nothing but decoding uploads."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from catdog_pl.inference.card import ModelCard, read_test_record
from catdog_pl.inference.runtime import open_runner


def card_of(
    ckpt_path: str | os.PathLike | None, onnx_path: str | os.PathLike | None, runtime: str = "auto"
) -> tuple[ModelCard, str | None]:
    """The card of a checkpoint or ONNX file, read in this process (the model is loaded, checked, then dropped), and
    the graph onnxruntime runs when ``runtime`` resolves to it (a checkpoint's is exported once and cached), else
    ``None``. A checkpoint's card carries the accuracy its last ``test`` recorded, whenever its graph was cached."""
    runner, card = open_runner(ckpt_path, onnx_path, runtime=runtime)
    graph = str(runner.path) if runner.runtime == "onnxruntime" else None
    record = read_test_record(ckpt_path) if ckpt_path is not None else None
    if record is not None:
        card = dataclasses.replace(card, test_acc=record["acc"], test=record)
    return card, graph


def read_card(
    ckpt_path: str | os.PathLike | None, onnx_path: str | os.PathLike | None, runtime: str = "auto"
) -> tuple[ModelCard, str | None]:
    """:func:`card_of` in a spawned process that exits once it has answered; its errors are raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(card_of, ckpt_path, onnx_path, runtime).result()
