"""The metrics' DDP sync is torchmetrics' own: under 2 gloo processes, one of which saw no image at all (its shard
held only unreadable files), every process computes the figures of all the images, as one process would."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from catdog_pl.core.labels import Classes
from catdog_pl.evaluation.metrics import ClassificationMetrics

CLASSES = Classes(("a", "b", "c"), ("a", "b", "c"), binary=False)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(20, 3, generator=generator), dim=1)
    targets = torch.randint(0, 3, (20,), generator=generator)
    return probs, targets, torch.rand(20, generator=generator)


def figures(metrics: ClassificationMetrics) -> dict:
    summary = metrics.compute()
    return {"counts": summary.counts.tolist(), "loss": summary.loss, "ece": summary.ece, "auroc": summary.auroc}


def worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        metrics = ClassificationMetrics(CLASSES)
        if rank == 0:  # rank 1's shard: nothing readable, no update at all
            metrics.update(*batch())
        results[rank] = figures(metrics)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_empty_shard_syncs_to_the_figures_of_all_images():
    single = ClassificationMetrics(CLASSES)
    single.update(*batch())
    expected = figures(single)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, args=(free_port(), results), nprocs=2, join=True)
        got = dict(results)
    assert sum(map(sum, expected["counts"])) == 20
    for rank in (0, 1):  # both processes, the empty one included, hold all 20 images' figures
        assert got[rank]["counts"] == expected["counts"]
        assert got[rank]["loss"] == pytest.approx(expected["loss"])
        assert got[rank]["ece"] == pytest.approx(expected["ece"])
        assert got[rank]["auroc"] == pytest.approx(expected["auroc"])
