"""Every process's results under DDP, whatever the size of its shard (files skipped mid-epoch make shards of
unequal size, even empty ones)."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer


def gather_shards(trainer: Trainer, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Every process's ``parts`` concatenated, on the CPU; ``parts`` itself in one process. A collective under
    DDP: every process must call it, and each gets the same answer."""
    if trainer.world_size <= 1:
        return parts
    shards: list = [None] * trainer.world_size
    torch.distributed.all_gather_object(shards, tuple(part.detach().cpu() for part in parts))
    return tuple(torch.cat(columns) for columns in zip(*shards, strict=True))
