"""Lightning's DDP with 2 CPU processes (gloo): the same results as one process, every prediction exactly once."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog_pl.cli import main
from catdog_pl.inference.predictor import Predictor

from .helpers import CONFIG, DDP_CONFIG, PROBABILITY_ATOL, QUIET, make_dataset, read_report, run_subprocess, write_image

DDP = ["--config", str(DDP_CONFIG), "--trainer.accelerator", "cpu", "--trainer.devices", "2"]


def cli(args: list[str], cwd: Path, timeout: float = 300) -> None:
    run_subprocess(args, cwd, timeout)


def scalar(run_dir: Path, tag: str) -> float:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator.Scalars(tag)[-1].value


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """fit with 2 processes on 32 + 16 generated photos; returns (workdir, data, last.ckpt)."""

    root = tmp_path_factory.mktemp("ddp")
    data = make_dataset(root / "data")
    cli(["fit", "--config", str(CONFIG), *DDP, "--data.data_dir", str(data), "--trainer.max_epochs", "6", *QUIET], root)
    return root, data, root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_fit_writes_one_run_and_one_checkpoint_set(ddp_run):
    root, _, last = ddp_run
    assert sorted(p.name for p in (root / "lightning_logs").iterdir()) == ["version_0"]
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 5
    assert checkpoint["global_step"] == 6 * 1  # 32 images = 2 processes x 1 batch of 16 per epoch
    assert len(list((root / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))) == 1


def test_ddp_test_metrics_are_global_and_equal_one_process(ddp_run, tmp_path):
    root, data, last = ddp_run
    cli(["test", "--config", str(CONFIG), *DDP, "--data.data_dir", str(data), "--ckpt_path", str(last),
         "--trainer.logger.init_args.save_dir", str(tmp_path), *QUIET], root)  # fmt: skip
    ddp_acc = scalar(tmp_path / "lightning_logs" / "version_0", "test/acc")
    ddp_loss = scalar(tmp_path / "lightning_logs" / "version_0", "test/loss")
    # The checkpoint loads in a single process, and its metrics there are the 2 processes' synchronised ones.
    single = main(["test", "--config", str(CONFIG), "--data.data_dir", str(data), "--ckpt_path", str(last),
                   "--trainer.logger", "false", *QUIET])  # fmt: skip
    assert ddp_acc == pytest.approx(float(single.trainer.callback_metrics["test/acc"]), abs=1e-6)
    assert ddp_loss == pytest.approx(float(single.trainer.callback_metrics["test/loss"]), abs=1e-4)


def test_ddp_learns_as_well_as_one_process(ddp_run, tmp_path, monkeypatch):
    _, data, last = ddp_run
    monkeypatch.chdir(tmp_path)
    single = main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data), "--trainer.max_epochs", "6",
                   "--trainer.logger", "false", "--trainer.callbacks", "null", "--trainer.enable_checkpointing",
                   "false", *QUIET])  # fmt: skip
    single_acc = single.trainer.test(single.model, datamodule=single.datamodule, verbose=False)[0]["test/acc"]
    ddp_acc = sum(row.ok and row.label == Path(row.path).parent.name[:-1] for row in Predictor.from_checkpoint(
        last).predict_many(sorted(str(p) for p in (data / "test_set").rglob("*.jpg")))) / 16  # fmt: skip
    # Stated tolerance: the shuffles differ (DistributedSampler), so runs agree within 2 of the 16 test photos.
    assert abs(ddp_acc - single_acc) <= 2 / 16
    assert ddp_acc >= 0.9


def test_ddp_predict_writes_each_file_once_in_order(ddp_run, tmp_path):
    root, _, last = ddp_run
    rng = np.random.default_rng(3)
    files = [write_image(tmp_path / "photos" / f"{i:02d}.jpg", rng, bright=i % 2 == 1) for i in range(16)]
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"")
    output = tmp_path / "predictions.csv"
    cli(["predict", *DDP, "--ckpt_path", str(last), "--data.predict_path", str(tmp_path / "photos"),
         "--data.predict_batch_size", "4", "--prediction.output", str(output), "--trainer.logger", "false", *QUIET],
        root)  # fmt: skip  # 17 files over 2 processes: the sampler pads a shard with a repeat
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == sorted([str(f) for f in files] + [str(tmp_path / "photos" / "broken.jpg")])
    assert sum(bool(row["error"]) for row in rows) == 1
    single = Predictor.from_checkpoint(last).predict_many([str(f) for f in files])
    by_path = {row["path"]: float(row["p_dog"]) for row in rows if not row["error"]}
    got, want = [by_path[r.path] for r in single], [r.probabilities["dog"] for r in single]
    np.testing.assert_allclose(got, want, atol=PROBABILITY_ATOL)


def test_a_shard_of_only_unreadable_files_ends_the_epoch_on_every_process(tmp_path):
    """Files that pass setup's header check but fail to decode are skipped mid-epoch; here every validation file
    of rank 1's shard is such a file, so that rank has nothing to log. Every collective (the loss, the metrics,
    the pictures, the run folder) must still be reached by both processes: before, rank 0 waited for rank 1
    in the loss's all-reduce until the 30-minute timeout."""
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)
    cut, rng = set(), np.random.default_rng(0)
    for i, path in enumerate(sorted((data / "test_set").rglob("*.jpg"))[1::2]):  # indices 1, 3, 5, 7: rank 1's
        whole = write_image(path, rng, bright=i >= 2, size=(96, 96)).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])  # the header is intact: only decoding fails
        cut.add(str(path))
    cli(["fit", "--config", str(CONFIG), *DDP, "--data.data_dir", str(data), "--trainer.max_epochs", "1",
         "--data.cache", "false", "--data.num_workers", "0", "--data.batch_size", "4", *QUIET], tmp_path,
        timeout=240)  # fmt: skip
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert set(read_report(run_dir / "skipped_images.rank1.csv")) == cut
    # Logged from rank 0's readable half alone: the share of those photos that the checkpoint labels right.
    readable = sorted(set(map(str, (data / "test_set").rglob("*.jpg"))) - cut)
    rows = Predictor.from_checkpoint(run_dir / "checkpoints" / "last.ckpt").predict_many(readable)
    right = sum(row.ok and row.label == Path(row.path).parent.name[:-1] for row in rows)
    assert len(readable) == 4 and scalar(run_dir, "val/acc") == pytest.approx(right / len(readable), abs=1e-6)
