"""A thread pool with a progress bar, for PIL work (decoding and checking photos releases the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers() -> int:
    """Streaming DataLoader workers that leave one core to the training process: 0 on one core, 1 on two, at most 8."""
    return max(0, min(available_cores() - 1, 8))


def thread_map(
    function: Callable, items: Sequence, desc: str, threads: int | None = None, progress: bool = True
) -> Iterator:
    """``map(function, items)`` in order on a thread per core, with a progress bar unless ``progress`` is false."""
    with ThreadPoolExecutor(max_workers=threads or available_cores()) as pool:
        results = pool.map(function, items, chunksize=16)
        yield from tqdm(results, total=len(items), desc=desc, leave=False, disable=not progress)


def serve_layout(workers: int | None = None, threads: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """``serve``'s inference workers and each one's threads: by default a worker per core, at most 4, which share
    the cores. (Measured on 2 cores: two single-threaded workers served the most, see benchmarks/README.md.)"""
    cores = cores or available_cores()
    workers = workers or min(cores, 4)
    return workers, threads or max(1, cores // workers)
