"""An exported ``model.onnx`` run with onnxruntime: probabilities and the card from its metadata. No torch."""

from __future__ import annotations

import os

import numpy as np

from catdog_pl.core.errors import InputError
from catdog_pl.inference.card import ModelCard


class OnnxRunner:
    """Probabilities from an exported ``model.onnx`` with onnxruntime; ``card`` is read from its metadata."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime  # the optional [onnx] extra

        if not os.path.isfile(path):
            raise InputError(f"{path}: no such ONNX file")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads  # this session's own pool; 0 (the default) is one per core
        try:
            self.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
            self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map)
        except Exception as error:  # onnxruntime's own types for a bad file; KeyError for foreign metadata
            raise InputError(
                f"{path}: not an ONNX file from catdog_pl export ({type(error).__name__}: {error})"
            ) from None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["probabilities"], {"image": images})[0]
