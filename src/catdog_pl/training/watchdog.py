"""A DDP run whose process dies stops everywhere with one message: which rank died, and the checkpoint to resume.

What Lightning 2.6 does with the processes its launcher starts (``python -m catdog_pl fit ... --trainer.devices
2``): the first process starts the others as its children, and its ``_ChildProcessObserver`` polls them every 5 s;
when one fails it SIGKILLs them all, itself included, with a log line that names the child's pid but not what to
do next. Nothing watches the other way: when the first process dies, its children are re-parented and keep going.
With gloo on one machine they fail at once in their next collective ("Connection closed by peer"), with a
traceback that does not say what happened; with NCCL they wait in the collective until its timeout (30 min).

:class:`PeerWatchdog` fills both gaps. In every process Lightning started, a daemon thread polls once a second:
the first process polls its children, the others whether their parent is still the process that started them.
When a peer is gone it prints one line and gives the process ``grace`` seconds to end on its own (the backend's
error, Lightning's observer), then ends it. ``on_exception`` prints the same line when the backend's error comes
first, so the message is there either way. A shorter collective timeout is not used instead: it would also end
healthy runs whose first process works alone for longer (checkpoints, plots, an uneven validation).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from catdog_pl.compat.lightning import kill_launched_children, own_launcher


class PeerWatchdog(Callback):
    """Stop this DDP process, with a message, when a process of the run on this machine has died.

    Args:
        interval: seconds between two looks at the other processes.
        grace: seconds the process has to end by itself after a death is noticed, before it is ended with exit
            code 1 (the first process also SIGKILLs its remaining children, as Lightning's observer would).
    """

    def __init__(self, interval: float = 1.0, grace: float = 5.0) -> None:
        self.interval = interval
        self.grace = grace
        self._trainer: pl.Trainer | None = None
        self._find_dead_peer: Callable[[], str | None] = lambda: None
        self._stop = threading.Event()
        self._reported = threading.Lock()
        self._thread: threading.Thread | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        launcher = own_launcher(trainer.strategy)
        if launcher is None:  # torchrun and SLURM watch their processes themselves
            return
        if launcher.procs:
            self.watch(lambda: dead_child(launcher.procs, first_rank=trainer.global_rank + 1), trainer)
        elif trainer.local_rank > 0:
            self.watch(parent_watch(rank=trainer.global_rank - trainer.local_rank), trainer)

    def watch(self, find_dead_peer: Callable[[], str | None], trainer: pl.Trainer | None = None) -> None:
        """Start the thread that calls ``find_dead_peer`` every ``interval`` seconds (``setup`` calls it)."""
        self._find_dead_peer = find_dead_peer
        self._trainer = trainer
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="catdog-peer-watchdog", daemon=True)
        self._thread.start()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._thread is not None and not isinstance(exception, KeyboardInterrupt):
            # The backend may raise a moment before the dead process is reaped or this one re-parented.
            deadline = time.monotonic() + 2 * self.interval
            while (death := self._find_dead_peer()) is None and time.monotonic() < deadline:
                time.sleep(self.interval / 10)
            if death is not None:
                self._report(death)
        self._stop.set()

    # The first process may exit before the others have torn down: once the work is done, no death is reported.
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop.set()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop.set()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop.set()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval)  # it wakes at once; a next fit or test starts a new one
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            death = self._find_dead_peer()
            if death is None:
                continue
            # A look later, in case this process was finishing anyway (its own end hooks set the stop).
            if self._stop.wait(self.interval) or not self._report(death) or self._stop.wait(self.grace):
                return
            if self._trainer is not None:
                kill_launched_children(self._trainer.strategy)  # the children still alive; none in a child process
            os._exit(1)

    def _report(self, death: str) -> bool:
        """Print the message once per process; whether this call printed it."""
        if self._stop.is_set() or not self._reported.acquire(blocking=False):
            return False
        trainer = self._trainer
        rank = trainer.global_rank if trainer is not None else "?"
        print(f"catdog_pl: {death}; stopping rank {rank} (pid {os.getpid()}) too. {resume_hint(trainer)}",
              file=sys.stderr, flush=True)  # fmt: skip
        return True


def dead_child(children: list[subprocess.Popen], first_rank: int) -> str | None:
    """What happened to the first child that ended with an error, or ``None`` while none has."""
    for index, child in enumerate(children):
        code = child.poll()
        if code:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            return f"rank {first_rank + index} (pid {child.pid}) died ({how})"
    return None


def parent_watch(rank: int) -> Callable[[], str | None]:
    """A function that says the parent (rank ``rank``, the process that started this one) died, or ``None``."""
    parent = os.getppid()

    def dead_parent() -> str | None:
        if os.getppid() == parent:
            return None
        return f"rank {rank} (pid {parent}), the process that started this one, died"

    return dead_parent


def resume_hint(trainer: pl.Trainer | None) -> str:
    """Which checkpoint to resume from: the newest ``last*.ckpt`` of the run, else its newest checkpoint."""
    callbacks = trainer.checkpoint_callbacks if trainer is not None else []
    folders = {cb.dirpath for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath}
    checkpoints = [path for folder in folders for path in Path(folder).glob("*.ckpt")]
    if not checkpoints:
        return "No checkpoint was written yet: start the run again."
    lasts = [path for path in checkpoints if path.name.startswith("last")] or checkpoints
    newest = max(lasts, key=lambda path: path.stat().st_mtime if path.exists() else 0.0)
    return f"The run can be resumed from its last checkpoint: fit ... --ckpt_path {newest.absolute()}"
