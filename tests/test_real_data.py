"""Long runs on the real photos of ../shared/data/cats_vs_dogs: `python -m pytest -m slow -n 0` (a few minutes)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_pl.cli import main

from .helpers import (
    ACCURACY_ATOL,
    CONFIG,
    QUIET,
    SHARED_DATA,
    add_bad_files,
    kill_after_epoch,
    make_bad_files,
    read_csv,
    read_report,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def original_run(tmp_path_factory) -> tuple[Path, float]:
    """configs/cnn.yaml for 25 epochs on the shared photos: (last.ckpt, test accuracy of last.ckpt)."""

    if not (SHARED_DATA / "training_set").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("original")
    main(["fit", "--config", str(CONFIG), "--data.data_dir", str(SHARED_DATA),
          "--trainer.logger.init_args.save_dir", str(root), *QUIET])  # fmt: skip
    last = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    cli = main(["test", "--config", str(CONFIG), "--data.data_dir", str(SHARED_DATA), "--ckpt_path", str(last),
                "--trainer.logger", "false", "--trainer.default_root_dir", str(root), *QUIET])  # fmt: skip
    return last, float(cli.trainer.callback_metrics["test/acc"])


def test_25_epochs_reach_the_original_accuracy(original_run):
    last, accuracy = original_run
    assert torch.load(last, weights_only=True)["epoch"] == 24
    assert accuracy >= 0.73, f"test accuracy {accuracy:.3f} after 25 epochs; the Keras original reaches 0.755"


def test_single_prediction_folder(original_run, shared_data, tmp_path, capsys):
    last, _ = original_run
    output = tmp_path / "single.csv"
    main(["predict", "--ckpt_path", str(last), "--data.predict_path", str(shared_data / "single_prediction"),
          "--prediction.output", str(output), "--trainer.logger", "false", *QUIET])  # fmt: skip
    rows = read_csv(output)
    assert [Path(row["path"]).name for row in rows] == [f"cat_or_dog_{i}.jpg" for i in range(1, 5)]
    assert all(row["label"] in ("cat", "dog") and 0 <= float(row["p_dog"]) <= 1 for row in rows)
    out = capsys.readouterr().out.splitlines()
    assert sum("cat_or_dog_" in line for line in out) == 4 and out[-1].startswith("4 images: 4 predicted, 0 failed")


def test_predict_accuracy_equals_test_accuracy(original_run, shared_data, tmp_path):
    last, accuracy = original_run
    output = tmp_path / "test_set.csv"
    main(["predict", "--ckpt_path", str(last), "--data.predict_path", str(shared_data / "test_set"),
          "--prediction.output", str(output), "--trainer.logger", "false", *QUIET])  # fmt: skip
    rows = read_csv(output)
    assert len(rows) == 1000
    hits = [row["label"] == Path(row["path"]).parent.name[:-1] for row in rows]
    assert np.mean(hits) == pytest.approx(accuracy, abs=ACCURACY_ATOL)  # one photo is 1e-3


def test_test_photos_plus_bad_files(original_run, shared_data, tmp_path):
    last, _ = original_run
    folder = tmp_path / "photos"
    shutil.copytree(shared_data / "test_set", folder)
    make_bad_files(folder / "bad")
    (folder / "bad" / "missing_data.jpg").write_bytes((folder / "cats" / "cat.4001.jpg").read_bytes()[:2000])
    output = tmp_path / "p.csv"
    main(["predict", "--ckpt_path", str(last), "--data.predict_path", str(folder), "--prediction.output",
          str(output), "--trainer.logger", "false", *QUIET])  # fmt: skip
    rows = read_csv(output)
    assert len(rows) == 1005
    assert sum(not row["error"] for row in rows) == 1000
    assert {Path(row["path"]).name for row in rows if row["error"]} == {
        "notes.jpg",
        "empty.jpg",
        "truncated.jpg",
        "bomb.png",
        "missing_data.jpg",
    }


def test_training_set_with_bad_files_trains_and_reports_them(shared_data, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(shared_data / "training_set", data / "training_set")
    shutil.copytree(shared_data / "test_set", data / "test_set")
    bad = add_bad_files(data / "training_set" / "cats")
    (data / "training_set" / "dogs" / "zero.jpeg").write_bytes(b"")
    (data / "training_set" / "dogs" / "text.png").write_text("not a png")
    (data / "training_set" / "dogs" / "cut.jpg").write_bytes((data / "training_set/dogs/dog.1.jpg").read_bytes()[:999])
    (data / "training_set" / "dogs" / "pdf.jpg").write_bytes(b"%PDF-1.4 a document")
    bad |= {str(data / "training_set" / "dogs" / n) for n in ("zero.jpeg", "text.png", "cut.jpg", "pdf.jpg")}
    assert len(bad) == 10
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data), "--trainer.max_epochs", "2", *QUIET])
    assert cli.trainer.current_epoch == 2
    assert set(read_report(tmp_path / "lightning_logs" / "version_0" / "skipped_images.csv")) == bad


def test_killed_25_epoch_run_resumes_to_the_end(shared_data, tmp_path, monkeypatch):
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(shared_data), *QUIET]
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    kill_after_epoch([sys.executable, "-m", "catdog_pl", *args], tmp_path, last, epoch=3, timeout=300)
    assert torch.load(last, weights_only=True)["epoch"] < 24
    monkeypatch.chdir(tmp_path)
    main([*args, "--ckpt_path", str(last)])
    assert torch.load(last, weights_only=True)["epoch"] == 24


def test_report_of_the_real_run(original_run, shared_data, tmp_path):
    from PIL import Image

    from catdog_pl.reporting.report import report

    last, accuracy = original_run
    page = report(last.parent.parent, tmp_path / "report", data_dir=shared_data)
    for name in ("curves.png", "confusion_matrix.png", "worst_mistakes.png", "augmented_batch.png"):
        with Image.open(tmp_path / "report" / name) as img:
            img.verify()
    text = page.read_text()
    shown = re.search(r"Accuracy \*\*(\d\.\d{3}) \(", text)  # the report's own evaluation, with its interval
    assert shown and float(shown.group(1)) == pytest.approx(accuracy, abs=ACCURACY_ATOL + 5e-4)  # as test's, rounded
    assert text.count("| cat | dog |") + text.count("| dog | cat |") == 12  # the 12 worst mistakes, listed
