"""Denormal floats flushed to zero on the CPU, for the command line's process.

Adam's second-moment estimates decay by ``beta2`` every step, and for weights whose gradients are tiny they sink
into the denormal range (below 1.2e-38 in fp32), where x86 CPUs compute many times slower. In a 25-epoch fit on the
README's 2-core VM the fused Adam step took 0.4 ms over the first ten epochs and 2.1 ms over the last ten, and an
epoch 0.70-0.75 s early against 0.85-0.90 s late. With the CPU's flush-to-zero and denormals-are-zero modes set,
the Adam step stays at 0.4 ms and every epoch runs at the early epochs' speed. TensorFlow sets the same modes in
the threads that run its CPU kernels, so the Keras original trained this way too. Values below 1.2e-38 become 0;
nothing here depends on them.
"""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Flush denormal floats to zero in this thread and in the CPU threads started after it; whether the CPU
    supports it (x86 with SSE3, and ARM).

    It has to run before PyTorch's first parallel CPU work: its intra-op (OpenMP) threads take the mode from the
    thread that starts them, and threads already running keep theirs, so that half of a 2-thread Adam step would
    still be slow. The command line's ``main`` calls it first; importing catdog_pl changes nothing.
    """
    return torch.set_flush_denormal(True)
