"""Fine-tuning: a schedule per phase, frozen epochs through BaseFinetuning, the linear probe on features computed
once (LP-FT), temperature scaling fitted on validation photos, and lr_find."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from catdog_pl.data.datamodule import CatDogDataModule
from catdog_pl.evaluation.calibration import fit_temperature
from catdog_pl.inference.predictor import Predictor
from catdog_pl.models.classifier import Classifier, to_probabilities
from catdog_pl.training.finetuning import compute_features, phase_factors
from catdog_pl.training.module import CatDogModule

from .helpers import CONFIG, DDP_CONFIG, QUIET, make_classes, make_dataset, run, run_subprocess

TINY = "test_efficientnet"  # timm's test model: 0.36 M parameters


class RecordRates(Callback):
    """The learning rate of every parameter group at every optimizer step."""

    def __init__(self) -> None:
        self.rates: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def small_trainer(epochs: int, *callbacks: Callback, **options) -> Trainer:
    return Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks),
                   precision="32-true", **options)  # fmt: skip


def tiny_data(root, **options) -> CatDogDataModule:
    return CatDogDataModule(str(root), image_size=48, batch_size=4, num_workers=0, **options)


def test_each_phase_warms_up_and_decays_on_its_own():
    factor = phase_factors([10, 20], warmup_fraction=0.2)
    first, second = [factor(s) for s in range(10)], [factor(s) for s in range(10, 30)]
    assert first[0] == pytest.approx(0.01) and max(first) == pytest.approx(1.0)
    assert second[0] == pytest.approx(0.01), "the second phase restarts its warm-up"
    assert max(second) == pytest.approx(1.0) and second.index(1.0) == 4  # peak after 20 % of its 20 steps
    assert second[-1] < 0.01  # and decays to about zero by its end


def test_after_unfreezing_the_body_trains_at_the_configured_rate(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)  # 16 training photos: 4 steps an epoch
    lr, ratio = 0.01, 0.1
    model = CatDogModule(backbone=TINY, image_size=48, freeze_epochs=1, lr=lr, backbone_lr_ratio=ratio,
                         optimizer="adamw", schedule="cosine", warmup_fraction=0.25)  # fmt: skip
    rates = RecordRates()
    small_trainer(2, rates).fit(model, datamodule=tiny_data(data))
    body, head = zip(*rates.rates, strict=True)
    assert max(body[:4]) == 0.0, "the body's rate is zero while it is frozen"
    assert max(head[:4]) == pytest.approx(lr)
    assert max(body[4:]) == pytest.approx(lr * ratio), "the body reaches its configured rate after unfreezing"
    assert body[4] < body[5] == pytest.approx(lr * ratio), "its own warm-up (1 step of 4), then its peak"
    assert max(head[4:]) == pytest.approx(lr)


def test_a_network_without_a_pretrained_body_refuses_frozen_epochs_in_one_line():
    for option in ({"freeze_epochs": 2}, {"linear_probe": True}):
        with pytest.raises(ValueError, match="keras_cnn has none") as error:
            CatDogModule(backbone="keras_cnn", **option)
        assert "\n" not in str(error.value)


def test_cached_features_equal_a_fresh_forward_pass(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=4, n_test=4)
    model = CatDogModule(backbone=TINY, image_size=48).eval()
    datamodule = tiny_data(data)
    trainer = small_trainer(1)
    trainer.strategy.connect(model)
    trainer.datamodule = datamodule  # as fit attaches it
    datamodule.trainer = trainer
    datamodule.setup("fit")
    features, targets = compute_features(model, trainer, datamodule.val_dataloader(), False, 1, "validation")
    batches = [datamodule.prepare_batch(batch, train=False) for batch in datamodule.val_dataloader()]
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        fresh = model.net.features(model.network_input(images))
        assert torch.allclose(features, fresh, atol=1e-6)
        assert torch.allclose(model.net.logits(features), model(images), atol=1e-5)  # forward = head(features)
    assert torch.equal(targets, labels) and sorted(set(labels.tolist())) == [0, 1]


def test_the_linear_probe_fits_the_head_then_the_whole_network_fine_tunes(tmp_path):
    data = make_classes(tmp_path / "data", 3, {"train": 12, "val": 4})
    model = CatDogModule(backbone=TINY, image_size=48, linear_probe=True, probe_views=2, lr=1e-3, optimizer="adamw",
                         schedule="cosine", class_names=("c00", "c01", "c02"))  # fmt: skip
    start = {name: value.clone() for name, value in model.net.state_dict().items()}
    head = {name for name, p in model.net.named_parameters() if any(p is q for q in model.net.head().parameters())}
    probed = {}

    class AfterProbe(Callback):  # the module's on_fit_start (the probe) runs after the callbacks': look at epoch 0
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if not probed:
                probed.update({name: value.clone() for name, value in pl_module.net.state_dict().items()})

    small_trainer(1, AfterProbe()).fit(model, datamodule=tiny_data(data))
    assert {name for name in start if not torch.equal(start[name], probed[name])} == head, "the probe fits the head"
    with torch.no_grad():
        weight = probed[next(name for name in head if name.endswith("weight"))]
        assert weight.abs().sum() > 0
    after = model.net.state_dict()
    assert any(not torch.equal(probed[name], after[name]) for name in start if name not in head), "then all trains"


def test_the_temperature_changes_probabilities_never_the_most_probable_class():
    torch.manual_seed(0)
    targets = torch.randint(0, 4, (500,))
    logits = torch.randn(500, 4)
    logits[torch.arange(500), targets] += 1.5
    temperature = fit_temperature(logits * 5, targets)  # over-confident logits: a temperature near 5 undoes it
    assert 3.5 < temperature < 6.5
    scaled, plain = to_probabilities(logits * 5, temperature), to_probabilities(logits * 5)
    assert not torch.allclose(scaled, plain)
    assert torch.equal(scaled.argmax(1), plain.argmax(1))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    images = torch.rand(6, 3, 4, 4)
    hot, cold = Classifier(net, tta=True, temperature=0.5), Classifier(net, tta=True)
    assert torch.equal(hot.probabilities(images).argmax(1), cold.probabilities(images).argmax(1))
    assert not torch.allclose(hot.probabilities(images), cold.probabilities(images))


def test_fit_saves_a_temperature_fitted_on_validation_and_test_reports_both_eces(tmp_path):
    data = make_classes(tmp_path / "data", 3, {"train": 12, "val": 6, "test": 6})
    cli = run("fit", "--config", CONFIG, "--data.data_dir", data, "--model.calibrate", "true", "--data.batch_size", "8",
              "--trainer.max_epochs", "2", "--trainer.precision", "32-true")  # fmt: skip
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["hyper_parameters"]["temperature"]
    assert saved != 1.0 and saved == pytest.approx(cli.model.temperature)
    assert float(cli.trainer.callback_metrics["val/temperature"]) == pytest.approx(saved)
    tested = run("test", "--ckpt_path", last, "--data.data_dir", data, "--trainer.logger", "false")
    assert tested.model.temperature == pytest.approx(saved)
    metrics = tested.trainer.callback_metrics
    assert "test/ece_unscaled" in metrics and float(metrics["test/ece_unscaled"]) != float(metrics["test/ece"])
    # predict, the Python API, export and serve all run the Classifier a checkpoint rebuilds: it divides by it too.
    predictor = Predictor.from_checkpoint(last, bf16=False, runtime="pytorch")
    assert predictor.model.temperature == pytest.approx(saved) and not predictor.model.tta
    image = torch.rand(1, 3, predictor.image_size, predictor.image_size)
    with torch.no_grad():
        assert torch.allclose(predictor.probabilities(image), to_probabilities(predictor.model(image), saved))
    photos = sorted(str(path) for path in (data / "test").rglob("*.jpg"))
    graph = Predictor.from_checkpoint(last, runtime="onnx")  # the exported graph divides by it as well
    for torch_row, graph_row in zip(predictor.predict_many(photos), graph.predict_many(photos), strict=True):
        assert graph_row.probabilities == pytest.approx(torch_row.probabilities, rel=1e-3, abs=1e-5)


def test_no_temperature_is_fitted_on_the_test_split(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)  # training_set/ + test_set/: validation is test_set
    with pytest.warns(UserWarning, match="no temperature fitted: validation is the test split"):
        cli = run("fit", "--config", CONFIG, "--data.data_dir", data, "--model.calibrate", "true",
                  "--trainer.max_epochs", "1", "--trainer.logger", "false")  # fmt: skip
    assert cli.model.temperature == 1.0


def test_resume_across_the_phase_boundary_unfreezes_and_keeps_the_schedule(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=8, n_test=4)
    args = ["--config", CONFIG, "--model.backbone", TINY, "--model.image_size", "48", "--model.freeze_epochs", "1",
            "--model.schedule", "cosine", "--model.optimizer", "adamw", "--data.data_dir", data,
            "--data.batch_size", "8", "--trainer.precision", "32-true"]  # fmt: skip
    run("fit", *args, "--trainer.max_epochs", "1")
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    frozen = torch.load(last, weights_only=True)["state_dict"]
    resumed = run("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", last)
    body = {f"net.{n}" for n, _ in resumed.model.net.named_parameters()} - {
        f"net.{n}" for n, p in resumed.model.net.named_parameters() if any(p is q for q in resumed.model.head)
    }
    after = resumed.model.state_dict()
    assert any(not torch.equal(frozen[name], after[name]) for name in body), "the body trains after the boundary"
    scheduler = resumed.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 4  # 2 steps an epoch, 2 epochs: the schedule continued, not restarted


def test_lr_find_prints_a_suggestion_and_saves_its_plot(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n_train=16, n_test=4)
    run("lr_find", "--config", CONFIG, "--data.data_dir", data, "--data.batch_size", "4",
        "--trainer.precision", "32-true")  # fmt: skip
    plot = tmp_path / "lightning_logs" / "version_0" / "lr_find.png"
    assert plot.stat().st_size > 1000
    assert "lr_find: suggested --model.lr" in capsys.readouterr().out


@pytest.mark.slow  # two DDP fits of 2 processes: 1-5 minutes on 2 cores
def test_lp_ft_and_the_temperature_run_under_two_ddp_processes(tmp_path):
    data = make_classes(tmp_path / "data", 3, {"train": 8, "val": 4, "test": 4})
    args = ["fit", "--config", CONFIG, "--config", DDP_CONFIG, "--trainer.accelerator", "cpu", "--trainer.devices",
            "2", "--model.backbone", TINY, "--model.image_size", "48", "--data.data_dir", data, "--data.batch_size",
            "4", "--trainer.max_epochs", "2", "--trainer.precision", "32-true", *QUIET]  # fmt: skip
    result = run_subprocess([*args, "--model.linear_probe", "true", "--model.calibrate", "true"], tmp_path)
    # Once (rank 0), on every training photo: 2 views x 24 photos.
    assert (result.stdout + result.stderr).count("linear probe: head fitted on 48 features") == 1
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["temperature"] != 1.0  # fitted on both processes' validation logits
    assert checkpoint["global_step"] == 2 * 3  # 24 photos = 2 processes x 3 batches of 4 an epoch
    # Frozen epochs would leave the frozen parameters out of DDP's gradient sync: refused in one line.
    refused = subprocess.run([sys.executable, "-m", "catdog_pl", *map(str, args), "--model.freeze_epochs", "1"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert refused.returncode != 0 and "--model.freeze_epochs does not run under DDP" in refused.stderr
