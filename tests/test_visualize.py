"""TensorBoard shows curves, hyper-parameters, augmented samples, confusion matrix, PR curve and worst mistakes;
`report` draws the same for people without TensorBoard."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog_pl.cli import main
from catdog_pl.reporting.report import event_rows, read_epochs, report

from .helpers import CONFIG, QUIET, make_dataset, write_image


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-epoch fit and a test of its last.ckpt, both logging into version_0."""

    root = tmp_path_factory.mktemp("viz")
    data = make_dataset(root / "data")
    # One bright "cat" among the test photos: a mistake for a model that learned bright = dog, so that even a model
    # perfect on the rest has a worst mistake to show.
    write_image(sorted((data / "test_set" / "cats").glob("*.jpg"))[0], np.random.default_rng(1), bright=True)
    common = ["--config", str(CONFIG), "--data.data_dir", str(data), "--trainer.logger.init_args.save_dir", str(root)]
    main(["fit", *common, "--trainer.max_epochs", "3", *QUIET])
    run_dir = root / "lightning_logs" / "version_0"
    main(["test", *common, "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
          "--trainer.logger.init_args.version", "0", *QUIET])  # fmt: skip
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    accumulator.Reload()
    return run_dir, data, accumulator


def test_curves_per_epoch(run):
    _, _, events = run
    scalars = set(events.Tags()["scalars"])
    for stage in ("train", "val"):
        for metric in ("loss", "acc", "auroc", "f1"):
            assert f"{stage}/{metric}" in scalars
            assert len(events.Scalars(f"{stage}/{metric}")) == 3  # once per epoch, not per step
    for tag in ("train/acc", "val/acc", "val/auroc", "val/f1", "test/acc"):
        assert all(0.0 <= event.value <= 1.0 for event in events.Scalars(tag))
    assert [round(e.value, 6) for e in events.Scalars("lr-Adam")] == [0.001] * 3


def test_metrics_csv_holds_what_tensorboard_holds(run):
    run_dir, _, events = run
    assert sorted(path.parent.name for path in run_dir.glob("*/metrics.csv")) == ["metrics"]  # the fit's only
    from_csv = read_epochs(run_dir)
    assert [epoch for epoch, _ in from_csv["val/acc"]] == [0, 1, 2]
    assert [value for _, value in from_csv["val/acc"]] == pytest.approx([e.value for e in events.Scalars("val/acc")])
    assert [value for _, value in from_csv["lr-Adam"]] == pytest.approx([0.001] * 3)
    (run_dir / "metrics").rename(run_dir / "moved")  # a run of 0.2, without metrics.csv: from the event files
    try:
        from_events = read_epochs(run_dir)["val/acc"]
    finally:
        (run_dir / "moved").rename(run_dir / "metrics")
    assert event_rows(run_dir) and [epoch for epoch, _ in from_events] == [0, 1, 2]
    assert [value for _, value in from_events] == pytest.approx([value for _, value in from_csv["val/acc"]])


def write_metrics(folder, rows):
    folder.mkdir(parents=True)
    lines = ["epoch,lr-Adam,step,val/acc"] + [f"{epoch},{lr},{step},{acc}" for epoch, lr, step, acc in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_a_fit_resumed_from_an_earlier_checkpoint_replaces_the_epochs_it_ran_again(tmp_path):
    # epochs 0-4, then a fit resumed from epoch 1's checkpoint that ran epochs 2-3: epoch 4 was abandoned
    write_metrics(tmp_path / "metrics", [(e, "", 10 * e + 9, e / 10) for e in range(5)] + [("", 0.1, 0, "")])
    write_metrics(tmp_path / "metrics.1", [("", 0.05, 20, ""), (2, "", 29, 0.9), ("", 0.05, 30, ""), (3, "", 39, 0.8)])
    write_metrics(tmp_path / "metrics-old", [(9, "", 99, 0.5)])  # not one of the run's: ignored
    epochs = read_epochs(tmp_path)
    assert epochs["val/acc"] == [(0, 0.0), (1, 0.1), (2, 0.9), (3, 0.8)]
    assert epochs["lr-Adam"] == [(0, 0.1), (2, 0.05), (3, 0.05)]  # each learning rate on the epoch it began


def test_a_resumed_fit_keeps_the_first_fits_figures(run, tmp_path):
    run_dir, data, _ = run
    root = tmp_path / "copy"
    shutil.copytree(run_dir, root / "lightning_logs" / "version_0")
    copied = root / "lightning_logs" / "version_0"
    last = str(copied / "checkpoints" / "last.ckpt")
    main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data), "--trainer.logger.init_args.save_dir",
          str(root), "--trainer.max_epochs", "4", "--ckpt_path", last, *QUIET])  # fmt: skip
    assert sorted(path.parent.name for path in copied.glob("*/metrics.csv")) == ["metrics", "metrics.1"]
    before, after = read_epochs(run_dir)["val/acc"], read_epochs(copied)["val/acc"]
    assert [epoch for epoch, _ in after] == [0, 1, 2, 3] and after[:3] == before


def test_hyperparameters_with_final_metrics(run):
    _, _, events = run
    assert events.PluginTagToContent("hparams")  # the HPARAMS tab's experiment and session
    assert {"hp/val_acc", "hp/val_auroc", "hp/val_loss"} <= set(events.Tags()["scalars"])
    val_acc = [e.value for e in events.Scalars("val/acc")]
    hp_acc = events.Scalars("hp/val_acc")
    assert hp_acc[0].step == 0 and hp_acc[0].value == 0  # the placeholder written with the hyper-parameters
    assert [e.value for e in hp_acc[1:]] == pytest.approx(val_acc)


def test_pictures(run):
    _, _, events = run
    images = events.Tags()["images"]
    assert {"train/augmented_batch", "val/confusion_matrix", "test/worst_mistakes"} <= set(images)
    assert len(events.Images("val/confusion_matrix")) == 3  # each validation end, no sanity check
    assert len(events.Images("train/augmented_batch")) == 1
    grid = events.Images("train/augmented_batch")[0]
    assert grid.width > 8 * 128 and grid.height > 2 * 128  # 32 images at 2x, in rows of 8


def test_confusion_counts_and_pr_curve_cover_every_validation_image(run):
    _, _, events = run
    text = events.Tensors("val/confusion_matrix_counts/text_summary")[-1].tensor_proto.string_val[0].decode()
    counts = [int(n) for n in re.findall(r"\| (\d+) \| (\d+) \|", text) for n in n]
    assert len(counts) == 4 and sum(counts) == 16  # 8 cats + 8 dogs in test_set, the validation set here
    pr = np.array(events.Tensors("val/pr_curve")[-1].tensor_proto.float_val).reshape(6, -1)
    assert np.allclose(pr[:4].sum(axis=0), 16)  # TP + FP + TN + FN at every threshold


def test_report_pngs_and_page(run, tmp_path):
    run_dir, data, _ = run
    page = report(run_dir, tmp_path / "report")
    for name in ("curves.png", "confusion_matrix.png", "augmented_batch.png"):
        with Image.open(tmp_path / "report" / name) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200
    text = page.read_text()
    assert "| accuracy |" in text and "![training curves](curves.png)" in text
    assert re.search(r"Accuracy \*\*\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}, n=16\)\*\*", text)  # with its 95 % interval
    # Worst mistakes are drawn when the model made one (a nearly perfect model may make none on 16 images).
    mistakes = json.loads((tmp_path / "report" / "metrics.json").read_text())["accuracy"] < 1.0
    assert ("worst_mistakes.png" in text) == mistakes == (tmp_path / "report" / "worst_mistakes.png").is_file()
    for picture in (tmp_path / "report").glob("worst_mistakes.png"):
        with Image.open(picture) as img:
            assert img.format == "PNG" and img.width >= 64 and img.height > 64  # one tile at least


def test_report_from_a_checkpoint_needs_the_data(run, tmp_path, capsys):
    run_dir, data, _ = run
    checkpoint = tmp_path / "copy.ckpt"
    checkpoint.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(SystemExit) as info:
        main(["report", str(checkpoint)])
    assert info.value.code == 2 and "pass --data_dir" in capsys.readouterr().err
    main(["report", str(checkpoint), "--data_dir", str(data), "--out", str(tmp_path / "r")])
    assert (tmp_path / "r" / "confusion_matrix.png").is_file() and not (tmp_path / "r" / "curves.png").exists()
