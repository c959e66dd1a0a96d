"""A DDP fit (2 gloo CPU processes from Lightning's launcher) whose rank 0 or rank 1 is SIGKILLed stops within a
minute with a message naming the dead rank and the checkpoint to resume from, and resumes from it to the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from catdog_pl.training.watchdog import dead_child

from .helpers import CONFIG, QUIET, ROOT

DDP = ["--config", str(ROOT / "configs" / "ddp.yaml"), "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
EPOCHS = 6
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
# A process stuck where the backend never notices that its peer is gone (NCCL waits for its timeout): it watches
# its parent as a DDP rank 1 does, and then only sleeps. PARENT starts it and sleeps, until it is killed.
ORPHAN = """
import time
from catdog_pl.training.watchdog import PeerWatchdog, parent_watch
PeerWatchdog(interval=0.2, grace=0.5).watch(parent_watch(rank=0))
print("watching", flush=True)
time.sleep(60)
"""
PARENT = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1]]); time.sleep(60)"


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()]


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent that does not reap it counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(condition, timeout: float, what: str) -> float:
    """Poll ``condition`` every 50 ms for at most ``timeout`` s; the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def epoch_of(path: Path) -> int | None:
    try:
        return torch.load(path, weights_only=True)["epoch"]
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


@pytest.mark.parametrize(
    "victim",
    # Both run with the slow tests (1-2 minutes each on 2 cores): Lightning's own observer already ends the run when
    # a child dies, and the watchdog's side of rank 0's death is tested fast by the orphan test below.
    [pytest.param(1, marks=pytest.mark.slow), pytest.param(0, marks=pytest.mark.slow)],
    ids=["kill-rank-1-child", "kill-rank-0-main"],
)
def test_a_killed_rank_stops_the_run_with_a_message_and_it_resumes(tiny_data, tmp_path, victim):
    args = ["fit", "--config", str(CONFIG), *DDP, "--data.data_dir", str(tiny_data), "--data.batch_size", "4",
            "--trainer.max_epochs", str(EPOCHS), *QUIET]  # fmt: skip
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    log = tmp_path / "fit.log"
    with open(log, "w") as output:
        main = subprocess.Popen([sys.executable, "-m", "catdog_pl", *args], cwd=tmp_path, env=ENV, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: epoch_of(last) is not None or main.poll() is not None, 180, "the first last.ckpt")
        assert main.poll() is None, log.read_text()[-3000:]
        (child,) = children(main.pid)
        killed, survivor = (child, main.pid) if victim == 1 else (main.pid, child)
        os.kill(killed, signal.SIGKILL)
        seconds = wait_until(lambda: not running(survivor) and main.poll() is not None, 60, "the survivor's exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(main.pid, signal.SIGKILL)  # both ranks share the session, even once re-parented
        main.wait(timeout=10)
    text = log.read_text()
    died = f"rank 1 (pid {child}) died (killed by SIGKILL)" if victim == 1 else f"rank 0 (pid {main.pid}), the process"
    assert died in text, text[-3000:]
    assert f"stopping rank {1 - victim} (pid {survivor})" in text
    assert f"The run can be resumed from its last checkpoint: fit ... --ckpt_path {last}" in text
    print(f"survivor (rank {1 - victim}) ended {seconds:.1f} s after the kill")
    killed_at = epoch_of(last)
    assert killed_at is not None and killed_at < EPOCHS - 1  # the killed save, if any, left the previous one

    resumed = subprocess.run([sys.executable, "-m", "catdog_pl", *args, "--ckpt_path", str(last)], cwd=tmp_path,
                             env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "catdog_pl: rank" not in resumed.stderr  # no death reported when the run ends well
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == EPOCHS - 1 and final["global_step"] == EPOCHS * 4  # 32 images / 2 ranks / batch 4
    assert not list(last.parent.glob(".*.tmp"))


def test_an_orphaned_process_stuck_outside_the_backend_is_ended(tmp_path):
    log = tmp_path / "orphan.log"
    with open(log, "w") as output:
        parent = subprocess.Popen([sys.executable, "-c", PARENT, ORPHAN], env=ENV, stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: "watching" in log.read_text(), 60, "the orphan's watchdog")
        (child,) = children(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(lambda: not running(child), 10, "the orphan's exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
    text = log.read_text()
    assert f"catdog_pl: rank 0 (pid {parent.pid}), the process that started this one, died" in text, text
    assert "No checkpoint was written yet" in text


def test_the_message_says_how_a_child_ended():
    finished, failed = (subprocess.Popen([sys.executable, "-c", code]) for code in ("pass", "raise SystemExit(3)"))
    for process in (finished, failed):
        process.wait(timeout=30)
    assert dead_child([finished], first_rank=1) is None  # a child that finished is no death
    assert dead_child([finished, failed], first_rank=1) == f"rank 2 (pid {failed.pid}) died (exited with code 3)"
