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
    """``map(function, items)`` in order on a thread per core, with a progress bar unless ``progress`` is false.

    Kept instead of ``tqdm.contrib.concurrent.thread_map``, which returns a list: the decode-once cache copies each
    decoded photo into its tensor as it comes, so a generator holds one copy of the data set at the peak where the
    list would hold two (the list, then the tensor)."""
    with ThreadPoolExecutor(max_workers=threads or available_cores()) as pool:
        results = pool.map(function, items, chunksize=16)
        yield from tqdm(results, total=len(items), desc=desc, leave=False, disable=not progress)
