"""An exported ``model.onnx`` run with onnxruntime: probabilities and the card from its metadata. No torch.

Threads are this runner's own: each session gets ``SessionOptions.intra_op_num_threads`` (never onnxruntime's
process-wide settings), and with ``sessions`` > 1 a batch is split between that many sessions run side by side (each
``session.run`` releases the GIL), which on 2 cores beat one session of 2 threads (benchmarks/README.md).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from catdog_pl.core.errors import InputError
from catdog_pl.inference.card import ModelCard


class OnnxRunner:
    """Probabilities from an exported ``model.onnx`` with onnxruntime; ``card`` and ``metadata`` come from the file.

    Args:
        path: the ONNX file (``python -m catdog_pl export``).
        threads: intra-op threads of each session; ``None`` or 0: onnxruntime's default, one per core.
        sessions: sessions that share each batch, run in parallel threads.
        spinning: whether idle intra-op threads spin (onnxruntime's default) rather than sleep at once; sleeping
            leaves the cores to decoding threads between batches.
    """

    runtime = "onnxruntime"

    def __init__(
        self, path: str | os.PathLike, threads: int | None = None, sessions: int = 1, spinning: bool = True
    ) -> None:
        import onnxruntime  # the optional [onnx] extra

        if not os.path.isfile(path):
            raise InputError(f"{path}: no such ONNX file")
        if sessions < 1:
            raise ValueError(f"sessions must be 1 or more, got {sessions}")
        self.path = os.fspath(path)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads  # this session's own pool; 0 (the default) is one per core
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.sessions = [
                onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
                for _ in range(sessions)
            ]
            self.metadata = dict(self.sessions[0].get_modelmeta().custom_metadata_map)
            self.card = ModelCard.from_metadata(self.metadata)
        except Exception as error:  # onnxruntime's own types for a bad file; KeyError for foreign metadata
            raise InputError(
                f"{path}: not an ONNX file from catdog_pl export ({type(error).__name__}: {error})"
            ) from None
        self.session = self.sessions[0]
        self.threads, self.spinning = threads, spinning
        self._pool = ThreadPoolExecutor(sessions, thread_name_prefix="catdog-onnx") if sessions > 1 else None

    @property
    def quantized(self) -> str | None:
        """``"int8"`` for a file ``export --quantize int8`` wrote, else ``None``."""
        return self.metadata.get("quantized")

    def run(self, images: np.ndarray, session_index: int = 0) -> np.ndarray:
        """uint8 ``(N, S, S, 3)`` -> float32 ``(N, C)`` on one session."""
        return self.sessions[session_index].run(["probabilities"], {"image": images})[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, S, S, 3)`` -> float32 ``(N, C)``, split between the sessions."""
        if self._pool is None or len(images) < 2:
            return self.run(images)
        chunks = np.array_split(images, min(len(self.sessions), len(images)))
        return np.concatenate(list(self._pool.map(self.run, chunks, range(len(chunks)))))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
