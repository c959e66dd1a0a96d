"""Nothing lost when a run dies: a fit killed with SIGKILL resumes from last.ckpt and logs on in its folder."""

from __future__ import annotations

import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog_pl.cli import main
from catdog_pl.reporting.report import read_epochs

from .helpers import CONFIG, kill_after_epoch


def test_killed_fit_resumes_and_logs_on(tiny_data, tmp_path, monkeypatch):
    epochs = 12  # the kill comes after epoch 2: enough left to resume, and the resumed run stays short
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--data.batch_size", "4",
            "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    run_dir = tmp_path / "lightning_logs" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    kill_after_epoch([sys.executable, "-m", "catdog_pl", *args], tmp_path, last, epoch=2)
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < epochs - 1

    monkeypatch.chdir(tmp_path)
    cli = main([*args, "--ckpt_path", str(last), "--trainer.enable_model_summary", "false"])
    assert cli.trainer.current_epoch == epochs
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == epochs - 1 and final["global_step"] == epochs * 8  # 32 images / batch 4
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]  # no new run folder
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    logged_epochs = sorted({int(event.value) for event in accumulator.Scalars("epoch")})
    assert logged_epochs == list(range(epochs))  # one curve, before and after the kill
    assert sorted(path.parent.name for path in run_dir.glob("*/metrics.csv")) == ["metrics", "metrics.1"]
    assert [epoch for epoch, _ in read_epochs(run_dir)["val/acc"]] == list(range(epochs))  # the CSVs agree


@pytest.mark.parametrize("version", ["7"])
def test_an_explicit_logger_version_is_kept(tiny_data, tmp_path, monkeypatch, version):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    main(args)
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    main([*args[:-4], "--trainer.max_epochs", "2", "--ckpt_path", str(last), "--trainer.logger.init_args.version",
          version, "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert (tmp_path / "lightning_logs" / f"version_{version}").is_dir()
