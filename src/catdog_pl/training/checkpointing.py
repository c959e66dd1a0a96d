"""Checkpoints written whole or not at all: a process killed while saving leaves the previous file readable.

Lightning's ``TorchCheckpointIO`` serialises into memory, and fsspec writes a local file through a temporary file
from :func:`tempfile.mkstemp`, in the system's temporary folder, moved into place at the end. Where that folder
lies on another filesystem than the checkpoints (``/tmp`` on tmpfs, a mounted disk), the move is a copy onto the
old ``last.ckpt``, and a kill during the copy leaves it truncated; nothing is fsynced, and the temporary file of a
killed save stays in ``/tmp``. :class:`AtomicCheckpointIO` writes beside the target instead, so the final step is
one rename on the same filesystem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import Strategy

TEMPORARY_SUFFIX = ".tmp"  # `.last.ckpt.tmp` beside `last.ckpt`: hidden, and not a `*.ckpt` that Lightning lists


def temporary_path(path: Path) -> Path:
    """Where a checkpoint for ``path`` is written before it replaces ``path``."""
    return path.with_name(f".{path.name}{TEMPORARY_SUFFIX}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go to a temporary file in the target's folder, flushed and fsynced,
    then ``os.replace``-d over the target, with the folder fsynced after it.

    Either the old file or the new, complete one is in place at every moment, whether the process is killed or
    the machine loses power. Remote paths (``s3://``, ...) keep Lightning's own saving. The temporary file of a
    save that was killed is overwritten by the next save to the same target, and the first save into a folder
    removes any others left there (only one process, rank 0, writes into a run's checkpoint folder).
    """

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote, or Lightning's TypeError
            return
        target = Path(path).absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent not in self._swept:
            remove_stale_temporaries(target.parent)
            self._swept.add(target.parent)
        temporary = temporary_path(target)
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        fsync_folder(target.parent)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.*.ckpt.tmp`` files that killed saves left in ``folder``; the paths removed."""
    stale = sorted(folder.glob(f".*.ckpt{TEMPORARY_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; Windows cannot open a folder, and its rename is final)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def use_atomic_checkpoint_io(strategy: Strategy) -> None:
    """Give ``strategy`` an :class:`AtomicCheckpointIO` unless the user chose a checkpoint plugin of their own."""
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
