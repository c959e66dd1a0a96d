"""export --quantize int8: onnxruntime's static quantization, calibrated on training photos and checked against the
float graph on the validation split; a file that loses too much accuracy is refused with the figures."""

from __future__ import annotations

import json
from pathlib import Path

import lightning
import numpy as np
import onnx
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.inference.onnx import OnnxRunner
from catdog_pl.inference.predictor import Predictor
from catdog_pl.training.module import CatDogModule

from .helpers import make_dataset

pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data folder): a keras_cnn whose data_dir is the tiny set (16 training photos a class)."""
    root = tmp_path_factory.mktemp("quantize")
    data = make_dataset(root / "data", n_train=16, n_test=8)
    torch.manual_seed(0)
    model = CatDogModule()
    path = root / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "datamodule_hyper_parameters": {"data_dir": str(data)},
                "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip
    return path, data


def test_an_int8_file_holds_its_accuracy_check(checkpoint, tmp_path, capsys):
    path, data = checkpoint
    output = tmp_path / "int8.onnx"
    main(["export", "--ckpt_path", str(path), "--output", str(output), "--quantize", "int8",
          "--calibration_photos", "8", "--max_accuracy_drop", "100"])  # fmt: skip
    model = onnx.load(output)
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)  # QDQ format
    runner = OnnxRunner(output)
    figures = json.loads(runner.metadata["quantization"])
    assert runner.quantized == "int8" and figures["photos"] == 16  # test_set is this layout's validation split
    assert figures["split"].startswith(str(data)) and "8 training photos" in figures["calibration"]
    rows = Predictor.from_checkpoint(path, runtime="pytorch", bf16=False).predict_many(
        sorted(str(p) for p in (data / "test_set").rglob("*.jpg"))
    )
    float_accuracy = np.mean([row.label == Path(row.path).parent.name[:-1] for row in rows])
    assert figures["float_accuracy"] == pytest.approx(float_accuracy)
    assert figures["accuracy_drop_points"] == pytest.approx(
        100 * (figures["float_accuracy"] - figures["int8_accuracy"])
    )
    assert "int8, validation accuracy float" in capsys.readouterr().out
    # The int8 graph still labels photos, from the file alone.
    assert Predictor.from_checkpoint(output).predict(rows[0].path).label in ("cat", "dog")


def test_an_int8_file_that_loses_too_much_accuracy_is_refused_with_the_figures(checkpoint, tmp_path, capsys):
    path, data = checkpoint
    output = tmp_path / "int8.onnx"
    with pytest.raises(SystemExit) as info:  # a bound of -100 points: int8 would have to be 100 points better
        main(["export", "--ckpt_path", str(path), "--output", str(output), "--quantize", "int8", "--data_dir",
              str(data), "--calibration_photos", "8", "--max_accuracy_drop", "-100"])  # fmt: skip
    error = capsys.readouterr().err
    assert info.value.code == 2 and f"{output}: int8 graph not written: validation accuracy float 0." in error
    assert "bound -100" in error and "labels equal on" in error and "16 photos" in error
    assert not output.exists() and list(tmp_path.iterdir()) == []  # nothing left behind


def test_int8_needs_training_photos(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(path), "--output", str(tmp_path / "q.onnx"), "--quantize", "int8",
              "--data_dir", str(tmp_path / "missing")])  # fmt: skip
    assert "--data_dir: int8 calibration needs the training photos" in capsys.readouterr().err
