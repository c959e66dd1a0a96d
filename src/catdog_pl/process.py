"""What the command line sets for its own process, first thing in ``main`` and never on import (a program that
imports catdog_pl keeps its own settings): glibc's malloc thresholds (:mod:`catdog_pl.allocator`), denormal floats
flushed to zero, and no NVML probe on every optimiser step where there is no NVML.
"""

from __future__ import annotations

import ctypes
import os

import torch

from catdog_pl.allocator import pin_malloc_thresholds

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"  # set to 1 by Lightning when it is imported
NVML_LIBRARY = "libnvidia-ml.so.1"  # the name torch.cuda loads it by


def prepare_process() -> dict[str, bool]:
    """Apply the three settings below; which of them took effect."""
    return {
        "malloc_thresholds": pin_malloc_thresholds(),
        "flush_denormals": flush_denormals(),
        "skip_nvml_probe": skip_missing_nvml_probe(),
    }


def flush_denormals() -> bool:
    """Flush denormal floats to zero in this thread and in the CPU threads started after it; whether the CPU
    supports it (x86 with SSE3, and ARM).

    Adam's second-moment estimates decay by ``beta2`` every step, and for weights whose gradients are tiny they sink
    into the denormal range (below 1.2e-38 in fp32), where x86 CPUs compute many times slower: a fused Adam step over
    the network's parameters with denormal estimates is ~10 times slower (``benchmarks/performance.py``), and
    without flushing the last epochs of a fit ran slower than the first (``benchmarks/plain_pytorch.py
    --keep_denormals``). TensorFlow sets the same modes in the threads that run its CPU kernels, so the Keras
    original trained this way too. Values below 1.2e-38 become 0; nothing here depends on them.

    It has to run before PyTorch's first parallel CPU work: its intra-op (OpenMP) threads take the mode from the
    thread that starts them, and threads already running keep theirs, so that half of a 2-thread Adam step would
    still be slow.
    """
    return torch.set_flush_denormal(True)


def skip_missing_nvml_probe() -> bool:
    """Where NVML cannot be loaded, let ``torch.cuda.is_available()`` stop trying to load it on every call; whether
    it was stopped.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that torch answers "is there a GPU?" from
    NVML without initialising CUDA. torch does not keep that answer until CUDA is initialised, which a CPU run never
    does, and every ``Optimizer.step`` asks. On a machine without an NVIDIA driver, each step therefore tried to load
    NVML, failed, and fell back to the CUDA runtime's own device count: ~35 us a call in a loop on the README's VM,
    and under Lightning, which calls ``training_step`` from inside ``optimizer.step``, between a batch's augmentation
    and its forward pass. With the variable at 0, torch goes to that same fallback at once (~0.5 us, its answer
    cached): nothing else changes. Where NVML loads (a machine with an NVIDIA driver), Lightning's setting stays.
    """
    if os.environ.get(NVML_CHECK) != "1" or torch.version.cuda is None or torch.version.hip is not None:
        return False
    if nvml_loads():
        return False
    os.environ[NVML_CHECK] = "0"
    return True


def nvml_loads() -> bool:
    """Whether NVML loads here, by the name torch.cuda loads it by."""
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True
