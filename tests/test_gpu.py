"""The GPU path: the cache lives on the device, training batches never wait on the GPU, and a GPU-trained
checkpoint predicts the same on a machine without one. Skipped where there is no CUDA device."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from catdog_pl.cli import main
from catdog_pl.data.transforms import BatchTrainAugment

from .helpers import CONFIG

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class SyncWatch(Callback):
    """Records the Python stack of every CUDA call that makes the host wait for the GPU while batches run:
    fetching, augmenting, forward, backward and optimizer steps (``torch.cuda.set_sync_debug_mode``).

    It watches from a batch's start to the next's, so the next batch's fetch counts, and stops at the end of each
    loop's last batch: what follows (metrics, pictures, checkpoints) synchronises once an epoch, by design.
    The sanity check is not watched."""

    def __init__(self) -> None:
        self.caught: list[str] = []
        self.watched_batches = 0
        self._watch: warnings.catch_warnings | None = None

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" in str(message):
            stack = traceback.format_stack()[:-2]  # less this function and the warnings module
            self.caught.append("".join(frame for frame in stack[-8:]))

    def _on(self, trainer) -> None:
        if trainer.sanity_checking:
            return
        self.watched_batches += 1
        if self._watch is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # switching the mode on warns that it is on: not a synchronisation
                torch.cuda.set_sync_debug_mode("warn")
            self._watch = warnings.catch_warnings()
            self._watch.__enter__()
            warnings.simplefilter("always")
            warnings.showwarning = self._record

    def _off(self) -> None:
        if self._watch is not None:
            self._watch.__exit__(None, None, None)
            self._watch = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.cuda.set_sync_debug_mode("default")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._on(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            self._off()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._on(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == trainer.num_val_batches[dataloader_idx] - 1:
            self._off()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._off()


def read_p_dog(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["path"]: float(row["p_dog"]) for row in csv.DictReader(handle)}


def test_gpu_fit_never_waits_per_step_and_its_checkpoint_predicts_alike_on_cpu(tiny_data, tmp_path):
    cli = main(["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--trainer.max_epochs", "3",
                "--data.batch_size", "8", "--trainer.accelerator", "gpu", "--trainer.devices", "1",
                "--trainer.enable_progress_bar", "false", "--trainer.callbacks+=tests.test_gpu.SyncWatch"])  # fmt: skip
    watch = next(cb for cb in cli.trainer.callbacks if isinstance(cb, SyncWatch))
    assert cli.datamodule.train_set.images.is_cuda and cli.datamodule.val_set.images.is_cuda
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.trainer.global_step == 3 * 4  # 32 training images, batch 8: every step ran
    assert watch.watched_batches == 3 * (4 + 2)  # every training and validation batch
    assert not watch.caught, "the host waited for the GPU during batches, at:\n" + "\n".join(sorted(set(watch.caught)))
    assert float(cli.trainer.callback_metrics["val/acc"]) >= 0.9  # dark cats, bright dogs

    checkpoint = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    predict = ["predict", "--config", str(CONFIG), "--ckpt_path", str(checkpoint), "--data.predict_path",
               str(tiny_data / "test_set"), "--trainer.precision", "32-true", "--trainer.logger", "false"]  # fmt: skip
    main([*predict, "--trainer.accelerator", "gpu", "--prediction.output", str(tmp_path / "gpu.csv")])
    # A machine without a GPU: the checkpoint's CUDA tensors must load there.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "catdog_pl", *predict, "--prediction.output", str(tmp_path / "cpu.csv")]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    gpu, cpu = read_p_dog(tmp_path / "gpu.csv"), read_p_dog(tmp_path / "cpu.csv")
    assert gpu.keys() == cpu.keys() and len(gpu) == 16
    assert max(abs(gpu[k] - cpu[k]) for k in gpu) < 1e-3


def test_gpu_augmentation_equals_the_cpu_one():
    """The same seed gives the same per-image crops, shears and flips on both (drawn on the CPU), so the same images
    up to the rounding of ``grid_sample``'s kernels."""
    images = torch.randint(0, 256, (64, 3, 80, 80), dtype=torch.uint8)
    augment = BatchTrainAugment(64)
    torch.manual_seed(0)
    cpu = augment(images)
    torch.manual_seed(0)
    gpu = augment(images.cuda())
    assert gpu.is_cuda and gpu.shape == cpu.shape == (64, 3, 64, 64)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-3)
