"""A checkpoint save interrupted midway (an error, or the process killed inside the write) leaves the previous
checkpoint readable, the run resumes from it, and no temporary file outlives a save or breaks the next run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from catdog_pl.cli import CatDogCLI, main
from catdog_pl.data.datamodule import CatDogDataModule
from catdog_pl.training.checkpointing import AtomicCheckpointIO, temporary_path
from catdog_pl.training.module import CatDogModule

from .helpers import CONFIG, QUIET, ROOT

DDP = ["--config", str(ROOT / "configs" / "ddp.yaml"), "--trainer.accelerator", "cpu"]
# Run as `python -c DYING_FIT fit ...`: the CLI, with torch.save killing the process (os._exit, no cleanup, like
# SIGKILL) after writing half of the bytes of the first last.ckpt it saves.
DYING_FIT = """
import io, os, sys, torch
real_save = torch.save
def save_half_then_die(obj, f, *args, **kwargs):
    if "last.ckpt" not in str(getattr(f, "name", "")):
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    f.write(buffer.getvalue()[: buffer.tell() // 2])
    f.flush()
    os.fsync(f.fileno())
    os._exit(9)
torch.save = save_half_then_die
from catdog_pl.cli import main
main(sys.argv[1:])
"""


# Run as `python -c DYING_SAVE target stock|atomic` with TMPDIR on another filesystem than `target`: saves epoch 1,
# then dies (os._exit) inside the save of epoch 2, wherever the bytes are being written to the target's filesystem:
# inside torch.save into a named file (ours), or inside the copy that moves fsspec's temporary file (Lightning's).
DYING_SAVE = """
import io, os, shutil, sys, torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from catdog_pl.training.checkpointing import AtomicCheckpointIO
checkpoint_io = {"stock": TorchCheckpointIO, "atomic": AtomicCheckpointIO}[sys.argv[2]]()
checkpoint_io.save_checkpoint({"epoch": 1, "weight": torch.ones(1_000_000)}, sys.argv[1])
real_save = torch.save
def save_half_then_die(obj, f, *args, **kwargs):
    if not hasattr(f, "name"):
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    f.write(buffer.getvalue()[: buffer.tell() // 2])
    f.flush()
    os._exit(9)
def copy_half_then_die(source, destination, length=0):
    destination.write(source.read(1_000_000))
    destination.flush()
    os._exit(9)
torch.save, shutil.copyfileobj, shutil._USE_CP_SENDFILE = save_half_then_die, copy_half_then_die, False
checkpoint_io.save_checkpoint({"epoch": 2, "weight": torch.ones(1_000_000)}, sys.argv[1])
"""
OTHER_FILESYSTEM = "/dev/shm"


def state(value: float) -> dict:
    return {"epoch": int(value), "state_dict": {"weight": torch.full((64, 64), value)}}


def test_a_save_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"  # the folder does not exist yet
    io = AtomicCheckpointIO()
    io.save_checkpoint(state(1.0), target)
    io.save_checkpoint(state(2.0), target)
    assert os.listdir(target.parent) == ["last.ckpt"]
    assert torch.load(target, weights_only=True)["epoch"] == 2
    assert io.load_checkpoint(target)["epoch"] == 2
    io.remove_checkpoint(target)
    assert not target.exists()


def test_a_save_that_fails_midway_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(state(1.0), target)

    def fail_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", fail_halfway)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint(state(2.0), target)
    assert torch.load(target, weights_only=True)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]  # the failed save's temporary file is gone


def test_stale_temporary_files_are_removed_and_do_not_block_a_save(tmp_path):
    target = tmp_path / "last.ckpt"
    stale = [temporary_path(target), temporary_path(tmp_path / "best-03.ckpt")]
    for path in stale:
        path.write_bytes(b"half a checkpoint from a killed save")
    (tmp_path / "notes.tmp").write_text("not ours")
    AtomicCheckpointIO().save_checkpoint(state(3.0), target)
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt", "notes.tmp"]
    assert torch.load(target, weights_only=True)["epoch"] == 3


def test_remote_paths_keep_lightnings_saving(monkeypatch):
    saved = []
    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", lambda ckpt, path: saved.append(path))
    AtomicCheckpointIO().save_checkpoint(state(1.0), "memory://run/last.ckpt")
    assert saved == ["memory://run/last.ckpt"]
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint(state(1.0), "last.ckpt", storage_options={"x": 1})


@pytest.mark.skipif(
    not os.path.isdir(OTHER_FILESYSTEM) or os.stat(OTHER_FILESYSTEM).st_dev == os.stat(tempfile.gettempdir()).st_dev,
    reason=f"needs {OTHER_FILESYSTEM} on another filesystem than pytest's tmp_path",
)
@pytest.mark.parametrize("kind, survives", [("atomic", True), ("stock", False)])
def test_a_kill_inside_a_save_with_the_temporary_folder_on_another_filesystem(tmp_path, kind, survives):
    """Why this plugin exists, pinned: Lightning's own save loses last.ckpt here (if it stops, the plugin can go)."""
    target = tmp_path / "last.ckpt"
    temporaries = Path(OTHER_FILESYSTEM) / f"catdog-{os.getpid()}-{kind}"
    temporaries.mkdir()
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(temporaries)}
        died = subprocess.run([sys.executable, "-c", DYING_SAVE, str(target), kind], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        leftovers = os.listdir(temporaries)
    finally:
        shutil.rmtree(temporaries)
    assert died.returncode == 9, died.stderr[-2000:]
    try:
        epoch = torch.load(target, weights_only=True)["epoch"]
    except RuntimeError:  # "PytorchStreamReader failed reading zip archive"
        epoch = None
    assert (epoch == 1) is survives
    assert (leftovers == []) is survives  # Lightning's killed save also leaves its whole temporary file behind


@pytest.mark.parametrize("extra", [[], DDP], ids=["one-process", "ddp"])
def test_the_cli_saves_through_it_with_one_process_and_with_ddp(tiny_data, extra):
    args = ["--config", str(CONFIG), *extra, "--data.data_dir", str(tiny_data)]
    cli = CatDogCLI(CatDogModule, CatDogDataModule, args=args, run=False)  # builds the Trainer, fits nothing
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    assert cli.trainer.strategy.__class__.__name__ == ("DDPStrategy" if extra else "SingleDeviceStrategy")


def test_a_fit_killed_inside_the_write_of_last_ckpt_resumes_from_the_previous_one(tiny_data, tmp_path):
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--data.batch_size", "4",
            "--trainer.max_epochs", "2", *QUIET]  # fmt: skip
    main(args)
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1

    resume = [*args[:-6], "--trainer.max_epochs", "4", *QUIET, "--ckpt_path", str(last)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
    died = subprocess.run([sys.executable, "-c", DYING_FIT, *resume], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert died.returncode == 9, died.stderr[-3000:]
    half = temporary_path(last)
    assert half.is_file() and 0 < half.stat().st_size < last.stat().st_size  # killed inside the write
    with pytest.raises((RuntimeError, EOFError, OSError)):
        torch.load(half, weights_only=True)
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the previous one, whole

    cli = main(resume)  # the killed save's temporary file is still there: it must not get in the way
    assert cli.trainer.current_epoch == 4
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == 3 and final["global_step"] == 4 * 8  # 32 images / batch 4
    assert not [name for name in os.listdir(last.parent) if name.endswith(".tmp")]
