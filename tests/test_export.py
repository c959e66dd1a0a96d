"""export: the ONNX graph's contract, its metadata, and onnxruntime agreeing with PyTorch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.data.images import prepare_image
from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.onnx import OnnxRunner
from catdog_pl.inference.predictor import Predictor
from catdog_pl.inference.runners import ProbabilityHead, load_runner

from .helpers import ROOT, SHARED_DATA
from .serving import tiny_model

onnx = pytest.importorskip("onnx", reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")
pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model.onnx, checkpoint, data folder), exported once through the CLI."""
    checkpoint, data = tiny_model(tmp_path_factory)
    output = tmp_path_factory.mktemp("export") / "model.onnx"
    main(["export", "--ckpt_path", str(checkpoint), "--output", str(output)])
    return output, checkpoint, data


def test_graph_takes_uint8_photos_and_gives_probabilities(exported):
    path, _, _ = exported
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    (image,) = model.graph.input
    (probabilities,) = model.graph.output
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert probabilities.name == "probabilities" and probabilities.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in probabilities.type.tensor_type.shape.dim]
    assert isinstance(in_dims[0], str) and in_dims[1:] == [64, 64, 3]  # dynamic batch, NHWC
    assert out_dims[0] == in_dims[0] and out_dims[1] == 2
    assert {entry.domain: entry.version for entry in model.opset_import}[""] == 18


def test_metadata_holds_classes_threshold_and_recipe(exported):
    path, _, _ = exported
    props = {entry.key: entry.value for entry in onnx.load(path).metadata_props}
    assert json.loads(props["class_names"]) == ["cats", "dogs"]
    assert float(props["threshold"]) == 0.5 and props["image_size"] == "64"
    recipe = json.loads(props["resize"])
    assert recipe["resample"] == "nearest" and "exif" in recipe and "no crop" in recipe["squash"]  # Keras's load_img
    assert recipe["draft"].startswith("none: every pixel decoded")  # a JPEG draft would blur nearest's aliasing
    assert props["catdog_pl_version"] and props["backbone"] == "keras_cnn"
    assert "test_acc" not in props  # this checkpoint saved no metrics


def test_metadata_has_the_checkpoints_test_accuracy_when_known(exported, tmp_path):
    _, checkpoint, _ = exported
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["metrics"] = {"val/acc": 0.5, "test/acc": 0.8125}
    with_metrics = tmp_path / "with_metrics.ckpt"
    torch.save(state, with_metrics)
    main(["export", "--ckpt_path", str(with_metrics), "--output", str(tmp_path / "m.onnx")])
    assert OnnxRunner(tmp_path / "m.onnx").card.test_acc == 0.8125


@pytest.mark.parametrize("batch", [3, 8])
def test_onnxruntime_matches_pytorch(exported, batch):
    path, checkpoint, _ = exported
    runner, _ = load_runner(checkpoint)
    head = ProbabilityHead(runner.model).float().eval()
    images = np.random.default_rng(batch).integers(0, 256, size=(batch, 64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = head(torch.from_numpy(images)).numpy()
    got = OnnxRunner(path)(images)
    assert got.shape == (batch, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_onnx_on_files_agrees_with_predict(exported):
    """The recipe (prepare_image) + the graph give predict_many's probabilities, file by file."""
    path, checkpoint, data = exported
    files = expand_inputs(data / "test_set")
    runner = OnnxRunner(path)
    card = runner.card
    got = runner(np.stack([prepare_image(f, card.image_size, card.interpolation) for f in files]))[:, 1]
    expected = [
        row.probabilities["dog"] for row in Predictor.from_checkpoint(checkpoint, bf16=False).predict_many(files)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(tmp_path / "notes.ckpt"), "--output", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2 and "not a catdog_pl checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_the_onnx_example_of_the_deploying_guide_runs_in_a_fresh_process(exported, tmp_path):
    """docs/deploying.md's onnxruntime + numpy + Pillow example, as written, on a generated photo."""
    path, _, data = exported
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "deploying.md").read_text(), re.S)
    code = next(block for block in blocks if "import onnxruntime" in block)
    photo = next((data / "test_set" / "dogs").glob("*.jpg"))
    script = code.replace('"model.onnx"', repr(str(path))).replace('"photo.jpg"', repr(str(photo)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    label, p = result.stdout.split()[:2]
    runner = OnnxRunner(path)
    card = runner.card  # configs/cnn.yaml: 64 px, nearest neighbour as Keras loads photos
    expected = card.answer(runner(prepare_image(photo, card.image_size, card.interpolation)[None])[0])
    assert label == expected["label"] and float(p) == pytest.approx(expected["probabilities"][label], abs=1e-6)


@pytest.mark.slow
def test_onnx_labels_equal_pytorch_on_every_test_photo(exported):
    if not (SHARED_DATA / "test_set").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA}")
    path, checkpoint, _ = exported
    files = expand_inputs(SHARED_DATA / "test_set")
    runner = OnnxRunner(path)
    card = runner.card
    got = np.concatenate(
        [
            runner(
                np.stack([prepare_image(f, card.image_size, card.interpolation) for f in files[start : start + 100]])
            )[:, 1]
            for start in range(0, len(files), 100)
        ]
    )
    rows = Predictor.from_checkpoint(checkpoint, bf16=False).predict_many(files)
    expected = np.array([row.probabilities["dog"] for row in rows])
    assert len(files) == 1000 and all(row.ok for row in rows)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    labels = [card.answer([1 - p, p])["label"] for p in got]
    assert labels == [row.label for row in rows]
