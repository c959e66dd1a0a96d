"""Fixed glibc malloc thresholds for the command line's process.

A CPU train step allocates and frees the same few large activations (the first convolution's output is 7.9 MB
in bf16 at batch 32) every batch. glibc serves blocks above its ``mmap`` threshold with fresh ``mmap`` pages and
moves that threshold as the program runs, and trims the top of its heap back to the system; depending on where
a process's heap happened to start, every step can map, fault in (zero) and unmap megabytes. On the 2-core VM of
the README that was ~80,000 page faults and ~13 % of the time of a training epoch (bf16), in the processes that
landed in that regime. Fixing both thresholds keeps these blocks in the heap in every process: the faults drop to
~100 an epoch; a fit's peak RSS measured 1.14-1.20 GB, against 1.07-1.17 GB before.
The ``mmap`` threshold is set above a batch of 256's activations (63 MB in bf16; inference at that batch ran at
twice the speed), where the C library accepts it.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLDS = (256 * 2**20, 32 * 2**20)  # the first one glibc accepts; older ones cap it at 32 MB on 64-bit
TRIM_THRESHOLD = 256 * 2**20  # free memory kept at the heap's top before it is returned to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a GNU C library (macOS, Windows, musl)
        return False


def pin_malloc_thresholds() -> bool:
    """Fix glibc's ``mmap`` and trim thresholds for this process; whether they were set.

    Nothing is changed where the C library is not glibc, or where the user tuned glibc's malloc already
    (``MALLOC_*_`` variables or ``glibc.malloc`` in ``GLIBC_TUNABLES``): their settings win. Called by the
    command line's ``main``, never on import, so a program that imports catdog_pl keeps its own allocator.
    """
    if not is_glibc():
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    if not any(mallopt(_M_MMAP_THRESHOLD, threshold) for threshold in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
