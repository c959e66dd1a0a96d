"""The one switch between the PyTorch module of a checkpoint and its exported graph run by onnxruntime, for
``predict``, :class:`~catdog_pl.inference.predictor.Predictor` and ``serve``. No torch: torch is imported only to run
or export a checkpoint, so an ONNX file, or a checkpoint whose graph is cached, is labelled without it.

``auto`` (the default) takes the graph on the CPU and PyTorch on a GPU. Measured on 2 cores
(benchmarks/predict_speed.py), onnxruntime fp32 labelled the 1000 test_set photos, decoding included, several times
faster than the PyTorch module, with the same labels; int8 is faster still but changes some labels, so it is never
chosen by default: ``export --quantize int8`` writes it, and its path is then given as the model.

A checkpoint's graph is exported on first use and kept beside it as ``<checkpoint>.onnx`` (in
``$XDG_CACHE_HOME/catdog_pl/graphs/`` where that folder cannot be written); its metadata records the checkpoint's
size, modification time and SHA-256, and a checkpoint that changed is exported again.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from catdog_pl.core.errors import InputError, OutputError
from catdog_pl.inference.card import ModelCard
from catdog_pl.inference.onnx import OnnxRunner

if TYPE_CHECKING:
    from catdog_pl.inference.runners import TorchRunner

#: The runtimes a user names (``--runtime``): ``auto`` picks one of the other two.
RUNTIMES = ("auto", "onnx", "pytorch")
#: Metadata keys of a cached graph that identify the checkpoint it was exported from.
SOURCE_KEYS = ("source_checkpoint_size", "source_checkpoint_mtime_ns", "source_checkpoint_sha256")


def is_graph(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an ONNX file (by its suffix) rather than a checkpoint."""
    return os.fspath(path).lower().endswith(".onnx")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime {runtime}: expected one of {', '.join(RUNTIMES)}")
    return runtime


def graph_runtime_installed() -> bool:
    """onnxruntime, and what exporting a checkpoint needs (onnx, onnxscript): the [onnx] extra."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def gpu_present() -> bool:
    """A CUDA device on this machine, seen without importing torch (its device files)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def resolve_runtime(path: str | os.PathLike, runtime: str = "auto", device: str = "cpu") -> str:
    """``"onnx"`` or ``"pytorch"`` for the model at ``path`` (a checkpoint or an ONNX file) on ``device``
    (``"cpu"``, ``"cuda"``, ``"auto"``: the GPU when there is one)."""
    check_runtime(runtime)
    if is_graph(path):
        if runtime == "pytorch":
            raise InputError(
                f"{path}: an ONNX file runs on onnxruntime only; give its checkpoint for --runtime pytorch"
            )
        return "onnx"
    if runtime != "auto":
        return runtime
    on_cpu = str(device).startswith("cpu") or (device == "auto" and not gpu_present())
    return "onnx" if on_cpu and graph_runtime_installed() else "pytorch"


def checkpoint_source(ckpt_path: str | os.PathLike, with_hash: bool = True) -> dict[str, str]:
    """What identifies a checkpoint's content, as graph metadata: size, mtime and (``with_hash``) SHA-256."""
    stat = os.stat(ckpt_path)
    source = {"source_checkpoint_size": str(stat.st_size), "source_checkpoint_mtime_ns": str(stat.st_mtime_ns)}
    if with_hash:
        digest = hashlib.sha256()
        with open(ckpt_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        source["source_checkpoint_sha256"] = digest.hexdigest()
    return source


def is_graph_of(metadata: dict[str, str], ckpt_path: str | os.PathLike) -> bool:
    """Whether a graph's ``metadata`` says it was exported from ``ckpt_path`` as it is now: size and mtime equal,
    or else (a copy, a touch) the same SHA-256."""
    quick = checkpoint_source(ckpt_path, with_hash=False)
    if all(metadata.get(key) == value for key, value in quick.items()):
        return True
    recorded = metadata.get("source_checkpoint_sha256")
    return recorded is not None and recorded == checkpoint_source(ckpt_path)["source_checkpoint_sha256"]


def cache_locations(ckpt_path: str | os.PathLike) -> list[Path]:
    """Where a checkpoint's graph is kept: beside it, then in the user's cache folder."""
    ckpt = Path(ckpt_path)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(os.fspath(ckpt.resolve()).encode()).hexdigest()[:16]
    return [ckpt.with_name(ckpt.name + ".onnx"), cache_home / "catdog_pl" / "graphs" / f"{ckpt.stem}-{key}.onnx"]


def cached_graph_runner(
    ckpt_path: str | os.PathLike, threads: int | None = None, sessions: int = 1, spinning: bool = True
) -> OnnxRunner:
    """The onnxruntime runner of a checkpoint's graph: the cached one while the checkpoint is unchanged, else a new
    export (with torch) in the first location that can be written."""
    if not os.path.isfile(ckpt_path):
        from catdog_pl.core.errors import CheckpointError

        raise CheckpointError(f"{ckpt_path}: no such checkpoint file")
    locations = cache_locations(ckpt_path)
    for location in locations:
        if location.is_file():
            try:
                runner = OnnxRunner(location, threads, sessions, spinning)
            except InputError:  # a damaged cache file is exported again
                continue
            if is_graph_of(runner.metadata, ckpt_path):
                return runner
            runner.close()
    from catdog_pl.inference.export import export_onnx  # torch: only when the graph must be (re)written

    for location in locations:
        try:
            export_onnx(ckpt_path, location, source=checkpoint_source(ckpt_path))
        except OutputError:
            continue
        return OnnxRunner(location, threads, sessions, spinning)
    raise OutputError(f"{locations[0]}: cannot write the checkpoint's ONNX graph here or in {locations[1].parent}")


def open_runner(
    ckpt_path: str | os.PathLike | None = None,
    onnx_path: str | os.PathLike | None = None,
    onnx_threads: int | None = None,
    runtime: str = "auto",
    sessions: int = 1,
) -> tuple[TorchRunner | OnnxRunner, ModelCard]:
    """The probability function (uint8 ``(N, S, S, 3)`` -> float32 ``(N, C)``) and card of a model on the CPU:
    an ONNX file, or a checkpoint run by ``runtime`` (its cached graph with onnxruntime, or PyTorch). onnxruntime
    gets ``sessions`` sessions of ``onnx_threads`` intra-op threads (``None``: one per core)."""
    if (ckpt_path is None) == (onnx_path is None):
        raise ValueError("give exactly one of ckpt_path and onnx_path")
    if onnx_path is not None or resolve_runtime(ckpt_path, runtime) == "onnx":
        if onnx_path is not None or is_graph(ckpt_path):
            runner = OnnxRunner(onnx_path if onnx_path is not None else ckpt_path, onnx_threads, sessions)
        else:
            runner = cached_graph_runner(ckpt_path, onnx_threads, sessions)
        return runner, runner.card
    from catdog_pl.inference.runners import load_runner  # torch: only for a checkpoint

    return load_runner(ckpt_path)
