"""How ``serve`` shares the cores between its inference workers and their threads."""

from __future__ import annotations

from catdog_pl.core.parallel import available_cores


def serve_layout(workers: int | None = None, threads: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """``serve``'s inference workers and each one's threads: by default a worker per core, at most 4, which share
    the cores. (Measured on 2 cores: two single-threaded workers served the most, see benchmarks/README.md.)"""
    cores = cores or available_cores()
    workers = workers or min(cores, 4)
    return workers, threads or max(1, cores // workers)
