"""What serve and the command line take on trust: checkpoints are read as data (no URL, no unpickled code, no
hyper-parameter that fetches or reads anything), and one threshold rule labels a probability at the threshold the
same in test's metrics, the CSV, the Python API and serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.core.errors import CheckpointError
from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.predictor import Predictor

from .helpers import CONFIG, read_csv, run
from .serving import tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_model(tmp_path_factory)


def with_hparams(checkpoint: Path, path: Path, **hparams: object) -> Path:
    """A copy of ``checkpoint`` whose hyper-parameters are changed (still safe to unpickle)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["hyper_parameters"].update(hparams)
    torch.save(saved, path)
    return path


@pytest.mark.parametrize("subcommand", ["fit", "test", "predict"])
@pytest.mark.parametrize("url", ["https://example.com/model.ckpt", "s3://bucket/model.ckpt", "registry"])
def test_a_url_ckpt_path_is_refused_before_anything_is_fetched(subcommand, url, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(subcommand, "--config", CONFIG, "--data.data_dir", tmp_path, "--ckpt_path", url)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and f"--ckpt_path {url}: checkpoints are read from local files only" in error


def test_weights_only_false_is_refused(trained, capsys):
    checkpoint, data = trained
    with pytest.raises(SystemExit) as exit_info:
        run("test", "--config", CONFIG, "--data.data_dir", data, "--ckpt_path", checkpoint, "--weights_only", "false")
    assert exit_info.value.code == 2 and "--weights_only false" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("pretrained", True, "must not ask for a download"),
        ("weights", "/etc/passwd", "must not name another file"),
        ("image_size", 100_000, "from 16 to 1024"),
        ("image_size", "64", "from 16 to 1024"),
        ("backbone", "os.system", "a timm model name"),
        ("threshold", 1.5, "between 0 and 1"),
        ("temperature", 0.0, "from 0.01 to 100"),
    ],
)
def test_hyper_parameters_that_do_more_than_build_the_network_are_refused(trained, tmp_path, field, value, why):
    """Refused by the reader every path shares (Predictor, export and serve's cards, test and fit's check), with one
    line naming the file, the field and the value, before any network is built."""
    bad = with_hparams(trained[0], tmp_path / "bad.ckpt", **{field: value})
    with pytest.raises(CheckpointError) as error:
        Predictor.from_checkpoint(bad)
    message = str(error.value)
    assert message.startswith(f"{bad}: hyper-parameter {field}={value!r} refused") and why in message
    assert "\n" not in message


def test_test_and_serve_refuse_a_crafted_checkpoint_with_one_line(trained, tmp_path, capsys):
    checkpoint, data = trained
    bad = with_hparams(checkpoint, tmp_path / "bad.ckpt", pretrained=True)
    test = ["test", "--config", CONFIG, "--data.data_dir", data, "--ckpt_path", bad, "--trainer.logger", "false"]
    for args in (test, ["serve", "--ckpt_path", bad]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(arg) for arg in args])
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_info.value.code == 2 and error == (
            f"catdog_pl: error: {bad}: hyper-parameter pretrained=True refused: a checkpoint carries its trained "
            "weights; it must not ask for a download"
        )


def test_a_probability_at_the_threshold_gets_one_label_everywhere(trained, tmp_path):
    """A network whose weights are all zero answers p = 0.5 exactly for every photo, at the threshold 0.5: test's
    accuracy, the CSV, the Python API and serve's worker all call every photo the class at or above it (dog)."""
    checkpoint, data = trained
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["state_dict"] = {key: torch.zeros_like(value) for key, value in saved["state_dict"].items()}
    zero = tmp_path / "zero.ckpt"
    torch.save(saved, zero)
    photos = expand_inputs(data / "test_set")
    dogs = sum(Path(path).parent.name == "dogs" for path in photos)
    assert 0 < dogs < len(photos)

    cli = run("test", "--config", CONFIG, "--data.data_dir", data, "--ckpt_path", zero, "--trainer.logger", "false")
    assert float(cli.trainer.callback_metrics["test/acc"]) == pytest.approx(dogs / len(photos))

    output = tmp_path / "predictions.csv"
    run("predict", "--config", CONFIG, "--ckpt_path", zero, "--data.predict_path", data / "test_set",
        "--prediction.output", output, "--trainer.logger", "false")  # fmt: skip
    rows = read_csv(output)
    assert len(rows) == len(photos) and {(row["label"], float(row["p_dog"])) for row in rows} == {("dog", 0.5)}

    api = [row.label for row in Predictor.from_checkpoint(zero, bf16=False).predict_many(photos)]
    assert api == ["dog"] * len(photos)

    pytest.importorskip("litserve", reason="the [serve] extra is not installed")
    from catdog_pl.serving.server import CatDogAPI
    from catdog_pl.serving.uploads import DecodedUpload

    worker = CatDogAPI(str(zero), None)
    worker.setup("cpu")
    answers = worker.predict([DecodedUpload(np.full((64, 64, 3), value, np.uint8), None) for value in (0, 128, 255)])
    assert [worker.encode_response(answer)["label"] for answer in answers] == ["dog"] * 3
    assert {worker.encode_response(answer)["probability"] for answer in answers} == {0.5}
