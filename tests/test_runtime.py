"""The runtime switch: PyTorch and onnxruntime give the same labels and probabilities for every backbone kind and
class count; a checkpoint's graph is cached and rebuilt when the checkpoint changes; predict on a graph runs
without Lightning or torch; and which options keep predict with Lightning."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

import catdog_pl
from catdog_pl.cli import main
from catdog_pl.core.errors import InputError
from catdog_pl.inference import graph_predict
from catdog_pl.inference.onnx import OnnxRunner
from catdog_pl.inference.predictor import Predictor
from catdog_pl.inference.runtime import cache_locations, resolve_runtime
from catdog_pl.training.module import CatDogModule

from .helpers import class_colour, read_csv, write_class_image
from .serving import FORBID_IMPORTS

pytest.importorskip("onnx", reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")
pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")

#: Every kind of backbone at a small size: the Keras CNN, the scratch ResNet, a timm network (timm's test model).
BACKBONES = [("keras_cnn", 64), ("scratch_resnet", 48), ("test_efficientnet", 48)]
#: torchvision's test/test_onnx.py tolerances for onnxruntime against PyTorch.
RTOL, ATOL = 1e-3, 1e-5


def save_checkpoint(path: Path, seed: int = 0, **model_args) -> Path:
    """A checkpoint of an untrained ``CatDogModule`` (random weights from ``seed``), as ``fit`` saves one."""
    torch.manual_seed(seed)
    model = CatDogModule(**model_args)
    state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**state, "pytorch-lightning_version": lightning.__version__}, path)
    return path


def photos(folder: Path, classes: int, count: int = 6) -> list[str]:
    rng = np.random.default_rng(classes)
    return [str(write_class_image(folder / f"p{i}.jpg", rng, class_colour(i % classes, classes))) for i in range(count)]


@pytest.mark.parametrize("classes", [["cats", "dogs"], ["ant", "bee", "cow"]], ids=["2-classes", "3-classes"])
@pytest.mark.parametrize(("backbone", "size"), BACKBONES, ids=[name for name, _ in BACKBONES])
def test_the_two_runtimes_agree(tmp_path, backbone, size, classes):
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", backbone=backbone, image_size=size, class_names=classes,
                                 tta=len(classes) == 3)  # fmt: skip
    items = [*photos(tmp_path / "photos", len(classes)), Image.new("RGB", (30, 50), (200, 40, 90))]
    torch_rows = Predictor.from_checkpoint(checkpoint, runtime="pytorch", bf16=False).predict_many(items, 4)
    graph = Predictor.from_checkpoint(checkpoint, runtime="onnx")
    assert graph.runtime == "onnxruntime" and graph.model is None and cache_locations(checkpoint)[0].is_file()
    graph_rows = graph.predict_many(items, 4)
    assert [row.label for row in graph_rows] == [row.label for row in torch_rows]
    labels = graph.labels
    got = np.array([[row.probabilities[label] for label in labels] for row in graph_rows])
    expected = np.array([[row.probabilities[label] for label in labels] for row in torch_rows])
    assert got.shape == (len(items), len(classes))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    # The float API too: [0, 1] tensors give the same probabilities on both.
    pixels = torch.rand(3, 3, size, size).mul(255).round().div(255)
    torch_probs = Predictor.from_checkpoint(checkpoint, runtime="pytorch", bf16=False).probabilities(pixels)
    np.testing.assert_allclose(graph.probabilities(pixels).numpy(), torch_probs.numpy(), rtol=RTOL, atol=ATOL)


def test_the_cached_graph_is_reused_and_rebuilt_when_the_checkpoint_changes(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "run" / "last.ckpt", seed=0)
    items = photos(tmp_path / "photos", 2)
    first = Predictor.from_checkpoint(checkpoint, runtime="onnx")
    graph = cache_locations(checkpoint)[0]
    assert graph == tmp_path / "run" / "last.ckpt.onnx" and first.runner.path == str(graph)
    written = graph.stat().st_mtime_ns

    Predictor.from_checkpoint(checkpoint, runtime="onnx")
    assert graph.stat().st_mtime_ns == written  # reused
    os.utime(checkpoint, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same content: the hash says so
    Predictor.from_checkpoint(checkpoint, runtime="onnx")
    assert graph.stat().st_mtime_ns == written

    save_checkpoint(checkpoint, seed=1)  # other weights in the same file
    changed = Predictor.from_checkpoint(checkpoint, runtime="onnx")
    assert graph.stat().st_mtime_ns != written
    expected = Predictor.from_checkpoint(checkpoint, runtime="pytorch", bf16=False).predict_many(items)
    got = changed.predict_many(items)
    np.testing.assert_allclose([r.probability for r in got], [r.probability for r in expected], rtol=RTOL, atol=ATOL)
    assert [r.probability for r in got] != pytest.approx([r.probability for r in first.predict_many(items)], abs=1e-4)


def test_a_folder_that_cannot_be_written_caches_the_graph_in_the_user_cache(tmp_path, monkeypatch):
    checkpoint = save_checkpoint(tmp_path / "run" / "last.ckpt")
    (tmp_path / "run" / "last.ckpt.onnx").mkdir()  # a folder where the graph would go: it cannot be written there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    predictor = Predictor.from_checkpoint(checkpoint, runtime="onnx")
    assert Path(predictor.runner.path).parent == tmp_path / "cache" / "catdog_pl" / "graphs"


def forbidding(tmp_path: Path, *names: str) -> dict[str, str]:
    blocker = tmp_path / "forbid_imports"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(FORBID_IMPORTS.format(names=names))
    source = str(Path(catdog_pl.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), source])}


def test_predict_on_a_graph_runs_without_lightning_or_torch_and_writes_lightnings_csv(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", backbone="keras_cnn")
    folder = tmp_path / "photos"
    photos(folder, 2, count=5)
    (folder / "broken.jpg").write_text("not a photo")
    main(["export", "--ckpt_path", str(checkpoint), "--output", str(tmp_path / "model.onnx")])
    command = [sys.executable, "-m", "catdog_pl", "predict", "--ckpt_path", str(tmp_path / "model.onnx"),
               "--data.predict_path", str(folder), "--prediction.output", str(tmp_path / "graph.csv")]  # fmt: skip
    result = subprocess.run(command, env=forbidding(tmp_path, "torch", "lightning"), capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == f"6 images: 5 predicted, 1 failed (threshold 0.5) -> {tmp_path}/graph.csv"
    main(["predict", "--ckpt_path", str(checkpoint), "--runtime", "pytorch", "--data.predict_path", str(folder),
          "--prediction.output", str(tmp_path / "torch.csv"), "--trainer.logger", "false",
          "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    graph_rows, torch_rows = read_csv(tmp_path / "graph.csv"), read_csv(tmp_path / "torch.csv")
    assert list(graph_rows[0]) == list(torch_rows[0])
    assert [(r["path"], r["label"], r["error"]) for r in graph_rows] == [
        (r["path"], r["label"], r["error"]) for r in torch_rows
    ]
    good = [i for i, r in enumerate(torch_rows) if not r["error"]]
    np.testing.assert_allclose([float(graph_rows[i]["p_dog"]) for i in good],
                               [float(torch_rows[i]["p_dog"]) for i in good], rtol=RTOL, atol=ATOL)  # fmt: skip


def test_predict_of_a_checkpoint_runs_its_cached_graph_on_the_cpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(graph_predict, "gpu_present", lambda: False)
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", backbone="keras_cnn")
    photos(tmp_path / "photos", 2, count=3)
    assert main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(tmp_path / "photos")]) is None
    assert (tmp_path / "m.ckpt.onnx").is_file()  # the graph, exported beside the checkpoint
    assert capsys.readouterr().out.splitlines()[-1].endswith("lightning_logs/version_0/predictions.csv")
    assert len(read_csv(tmp_path / "lightning_logs" / "version_0" / "predictions.csv")) == 3


@pytest.mark.parametrize(
    ("args", "routed"),
    [
        (["--ckpt_path", "m.onnx", "--data.predict_path", "p"], True),
        (["--ckpt_path=m.ckpt", "--data.predict_path", "p", "--trainer.logger", "false"], True),
        (["--ckpt_path", "m.ckpt", "--runtime", "pytorch"], False),
        (["--ckpt_path", "m.ckpt", "--config", "configs/cnn.yaml"], False),  # a config may say anything
        (["--ckpt_path", "m.ckpt", "--model.tta", "false"], False),  # the graph holds the checkpoint's tta
        (["--ckpt_path", "m.ckpt", "--trainer.accelerator", "gpu"], False),
        (["--ckpt_path", "m.ckpt", "--trainer.devices", "2", "--trainer.strategy", "ddp"], False),
        (["--ckpt_path", "m.ckpt", "--runtime", "onnx", "--data.predict_batch_size", "8"], True),
    ],
)
def test_which_predict_runs_on_the_graph(monkeypatch, args, routed):
    monkeypatch.setattr(graph_predict, "gpu_present", lambda: False)
    assert (graph_predict.route(args) is not None) == routed


def test_an_option_the_graph_cannot_honour_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(graph_predict, "gpu_present", lambda: False)
    with pytest.raises(InputError, match=r"^--model.tta: not an option of predict on onnxruntime"):
        graph_predict.route(["--ckpt_path", "m.onnx", "--model.tta", "false"])
    with pytest.raises(InputError, match="--runtime cuda: expected one of auto, onnx, pytorch"):
        graph_predict.route(["--ckpt_path", "m.ckpt", "--runtime", "cuda"])
    with pytest.raises(InputError, match="m.onnx: an ONNX file runs on onnxruntime"):
        resolve_runtime("m.onnx", "pytorch")
    assert resolve_runtime("m.ckpt", "auto", "cuda") == "pytorch" and resolve_runtime("m.ckpt", "auto") == "onnx"


def test_an_onnx_file_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a graph")
    with pytest.raises(InputError, match="not an ONNX file from catdog_pl export"):
        OnnxRunner(tmp_path / "junk.onnx")


def test_serve_of_a_checkpoint_hands_its_workers_the_cached_graph(tmp_path):
    pytest.importorskip("litserve", reason="the [serve] extra (litserve, python-multipart) is not installed")
    from catdog_pl.serving.server import build_server

    checkpoint = save_checkpoint(tmp_path / "m.ckpt")
    api = build_server(str(checkpoint), runtime="onnx").lit_api
    assert (api.ckpt_path, api.onnx_path) == (None, str(tmp_path / "m.ckpt.onnx"))  # the workers need no torch
    api = build_server(str(checkpoint), runtime="pytorch").lit_api
    assert (api.ckpt_path, api.onnx_path) == (str(checkpoint), None)
