"""Honest evaluation: accuracy with its Wilson interval, any two class names in the outputs, and flip TTA."""

from __future__ import annotations

import math

import pytest
import torch

from catdog_pl.core.labels import decide
from catdog_pl.evaluation.metrics import confusion_counts, format_accuracy, wilson_interval, worst_mistakes
from catdog_pl.models.classifier import to_probabilities
from catdog_pl.training.module import CatDogModule

from .helpers import CONFIG, make_dataset, read_csv, run


def test_wilson_interval_matches_the_formula_and_its_known_values():
    low, high = wilson_interval(769, 1000)
    assert (round(low, 3), round(high, 3)) == (0.742, 0.794)  # the figures a user compares runs by
    assert format_accuracy(769, 1000) == "0.769 (0.742-0.794, n=1000)"
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    z, n, p = 1.959964, 50, 0.6
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(30, 50) == pytest.approx((centre - half, centre + half))


def test_confusion_counts_and_worst_mistakes():
    p_dog = torch.tensor([0.9, 0.2, 0.6, 0.4, 0.01, 0.5])
    probs, targets = torch.stack([1 - p_dog, p_dog], dim=1), torch.tensor([0, 0, 1, 1, 1, 0])
    predicted = decide(probs, 0.5, binary=True)
    assert predicted.tolist() == [1, 0, 1, 0, 0, 1]  # at the threshold exactly: class 1, as everywhere
    assert confusion_counts(predicted, targets, 2).tolist() == [[1, 2], [2, 1]]
    assert worst_mistakes(probs, predicted, targets, 2).tolist() == [4, 0]  # p 0.01 for a dog, then 0.9 for a cat


def test_test_reports_the_interval_and_names_the_probability_after_class_1(tmp_path, capsys):
    data = make_dataset(tmp_path / "bugs", n_train=8, n_test=4)
    for split in ("training_set", "test_set"):
        (data / split / "cats").rename(data / split / "ants")
        (data / split / "dogs").rename(data / split / "bees")
    run("fit", "--config", CONFIG, "--data.data_dir", data, "--trainer.max_epochs", "1")
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    tested = run("test", "--ckpt_path", last, "--data.data_dir", data, "--trainer.logger", "false")
    metrics = tested.trainer.callback_metrics
    correct = round(float(metrics["test/acc"]) * 8)
    assert (float(metrics["test/acc_low95"]), float(metrics["test/acc_high95"])) == pytest.approx(
        wilson_interval(correct, 8)
    )
    assert f"test accuracy {format_accuracy(correct, 8)}" in capsys.readouterr().out
    run("predict", "--ckpt_path", last, "--data.predict_path", data / "test_set", "--prediction.output",
        tmp_path / "p.csv", "--trainer.logger", "false")  # fmt: skip
    rows = read_csv(tmp_path / "p.csv")
    assert list(rows[0]) == ["path", "label", "probability", "p_ant", "p_bee", "error"]
    assert {row["label"] for row in rows} <= {"ant", "bee"}


def test_flip_tta_averages_the_image_and_its_mirror():
    model = CatDogModule(tta=True).eval()
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        plain = to_probabilities(model(images))
        mirrored = to_probabilities(model(images.flip(-1)))
        assert torch.allclose(model.probabilities(images), (plain + mirrored) / 2)
        assert not torch.allclose(plain, mirrored)  # the check above could not pass by accident
        symmetric = torch.cat([images[..., :32], images[..., :32].flip(-1)], dim=-1)
        model.hparams.tta = False
        assert torch.allclose(model.probabilities(symmetric), to_probabilities(model(symmetric)))


def test_tta_test_step_gives_predicts_probabilities_from_two_forward_passes():
    """test's probabilities with TTA are predict's, and the photo's pass of the loss is reused: two passes a batch
    (the photo and its mirror), not three."""
    model = CatDogModule(tta=True).eval()
    images, targets = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 0, 1])
    passes = []
    model.net.register_forward_hook(lambda module, args, output: passes.append(1))
    with torch.no_grad():
        probs = model.test_step((images, targets), 0)["probs"]
        assert len(passes) == 2
        assert torch.allclose(probs, model.probabilities(images))


def test_tta_given_on_the_command_line_wins_over_the_checkpoint(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)
    run("fit", "--config", CONFIG, "--data.data_dir", data, "--trainer.max_epochs", "1")
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    common = ["--ckpt_path", last, "--data.data_dir", data, "--trainer.logger", "false"]
    assert run("test", *common).model.hparams.tta is False  # the faithful config's default
    with_tta = run("test", *common, "--model.tta", "true")
    assert with_tta.model.hparams.tta is True
