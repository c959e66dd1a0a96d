import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import catdog_pl.cli as cli_module
import catdog_pl.lightning_cli as lightning_cli
from catdog_pl.cli import main

from .helpers import CONFIG, QUIET, ROOT, label_accuracy, make_dataset


def run(subcommand: str, data_dir: Path, extra: str = ""):
    """``main([subcommand, --config configs/cnn.yaml, --data.data_dir data_dir, ...])``, quiet and in-process."""
    return main(
        [
            subcommand,
            "--config",
            str(CONFIG),
            "--data.data_dir",
            str(data_dir),
            *QUIET,
            "--data.num_workers",
            "0",
            *extra.split(),
        ]
    )


def test_fit_then_test_from_checkpoint(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("fit", tiny_data, "--trainer.max_epochs 2 --trainer.limit_train_batches 1 --model.image_size 48")
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert (run_dir / "config.yaml").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file() and list((run_dir / "checkpoints").glob("best-*.ckpt"))

    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 1
    assert checkpoint["hyper_parameters"]["image_size"] == 48
    assert list(checkpoint["hyper_parameters"]["class_names"]) == ["cats", "dogs"]

    # No --config and no --model.image_size: the size comes back from the checkpoint, and the data follows it.
    cli = main(["test", "--data.data_dir", str(tiny_data), "--ckpt_path", str(last), *QUIET])
    assert cli.model.hparams.image_size == 48 and cli.datamodule.image_size == 48
    bf16 = cli.trainer.precision == "bf16-mixed"
    assert float(cli.trainer.callback_metrics["test/n"]) == 16  # every test photo
    assert float(cli.trainer.callback_metrics["test/acc"]) == pytest.approx(
        label_accuracy(last, tiny_data / "test_set", bf16)
    )
    assert {"test/loss", "test/auroc", "test/f1"} <= set(cli.trainer.callback_metrics)
    # validate with val_split 0 evaluates test_set too, as the original's validation did: the same figures.
    validated = run("validate", tiny_data, f"--ckpt_path {last} --model.image_size 48")
    assert validated.trainer.callback_metrics["val/acc"] == cli.trainer.callback_metrics["test/acc"]


def test_a_checkpoint_of_another_image_size_than_the_config_is_refused(tiny_data, capsys):
    run("fit", tiny_data, "--trainer.max_epochs 1 --model.image_size 48")
    last = "lightning_logs/version_0/checkpoints/last.ckpt"
    with pytest.raises(SystemExit) as info:
        run("test", tiny_data, f"--ckpt_path {last}")  # configs/cnn.yaml asks for 64 px
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert last in error and "keras_cnn at 48 px" in error and "model.image_size=64" in error


def test_class_names_come_from_the_folders(tmp_path, monkeypatch):

    data = make_dataset(tmp_path / "pets", n_train=4, n_test=2)
    for split in ("training_set", "test_set"):
        (data / split / "cats").rename(data / split / "Cat")
        (data / split / "dogs").rename(data / split / "Dog")
    monkeypatch.chdir(tmp_path)
    run("fit", data, "--trainer.max_epochs 1")
    checkpoint = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert list(checkpoint["hyper_parameters"]["class_names"]) == ["Cat", "Dog"]


def test_learns_bright_dogs_from_dark_cats(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_files = "--trainer.logger false --trainer.enable_checkpointing false --trainer.callbacks null"
    cli = run("fit", tiny_data, f"--trainer.max_epochs 8 --data.batch_size 8 {no_files}")
    before = cli.model.net.conv1.weight.detach().clone()
    result = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    assert result["test/acc"] >= 0.95
    assert torch.equal(before, cli.model.net.conv1.weight)  # test does not train
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # no logger, no run folder: nothing written


def test_layout_error_exits_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        run("fit", tmp_path / "nowhere")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("catdog_pl: error: ") and str(tmp_path / "nowhere") in err[-1]


def test_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "catdog_pl", "--help"], capture_output=True, text=True, check=True)
    assert "fit" in out.stdout and "predict" in out.stdout and "prepare" in out.stdout
    out = subprocess.run([sys.executable, "-m", "catdog_pl", "predict", "--help"], capture_output=True, text=True)
    assert "--data.predict_path" in out.stdout and "--prediction.output" in out.stdout


def test_precision_follows_the_hardware(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from catdog_pl.core import devices

    monkeypatch.setattr(devices, "bf16_is_fast", lambda accelerator="auto": False)
    assert devices.default_precision() == "32-true"
    monkeypatch.setattr(lightning_cli, "default_precision", lambda accelerator="auto": "bf16-mixed")
    quick = (
        "--trainer.max_epochs 1 --trainer.logger false --trainer.callbacks null --trainer.enable_checkpointing false"
    )
    assert run("fit", tiny_data, quick).trainer.precision == "bf16-mixed"
    assert run("fit", tiny_data, f"{quick} --trainer.precision 32-true").trainer.precision == "32-true"


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(config), "--print_config"])
    assert info.value.code == 0
    assert "max_epochs" in capsys.readouterr().out


def test_the_configured_progress_bar_is_used_and_turns_off(tiny_data):
    from lightning.pytorch.callbacks import TQDMProgressBar

    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.enable_model_summary", "false"]  # fmt: skip
    callbacks = yaml.safe_load(CONFIG.read_text())["trainer"]["callbacks"]  # a file beside the config
    configured = next(cb for cb in yaml.safe_load((CONFIG.parent / callbacks).read_text()) if "ProgressBar" in
                      cb["class_path"])  # fmt: skip
    bars = [cb for cb in main(args).trainer.callbacks if isinstance(cb, TQDMProgressBar)]
    assert [bar.refresh_rate for bar in bars] == [configured["init_args"]["refresh_rate"]]
    # Lightning refuses a progress-bar callback beside enable_progress_bar=False: the CLI drops the configured one.
    trainer = main([*args, "--trainer.enable_progress_bar", "false"]).trainer
    assert trainer.progress_bar_callback is None


def test_library_warnings_a_user_cannot_act_on_are_hidden(tiny_data, monkeypatch):
    args = ["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.precision", "bf16-mixed", "--trainer.logger", "false",
            "--trainer.callbacks", "null", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "true"]  # fmt: skip

    def known(quiet: bool) -> set[str]:
        """The ``KNOWN_WARNINGS`` that a fit through ``main`` lets through, with or without its filter."""
        with monkeypatch.context() as patch, warnings.catch_warnings(record=True) as records:
            if not quiet:
                patch.setattr(cli_module, "quiet_known_warnings", lambda: None)
            warnings.simplefilter("always")
            main(args)
        return {
            pattern
            for record in records
            for pattern, category in cli_module.KNOWN_WARNINGS
            if issubclass(record.category, category) and re.match(pattern, str(record.message))
        }

    # Each filter still has its warning to hide (drop the ones the installed Lightning and torch no longer emit),
    # and hides it.
    assert known(quiet=False) == {pattern for pattern, _ in cli_module.KNOWN_WARNINGS}
    assert known(quiet=True) == set()


def test_lightnings_logger_advert_is_dropped_and_its_other_messages_kept(tiny_data, tmp_path, monkeypatch):
    """Every fit printed Lightning's "Tip: ... try installing [litlogger]" INFO record; main drops that one alone."""
    import logging

    monkeypatch.chdir(tmp_path)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(handler)
    try:
        run("fit", tiny_data, "--trainer.max_epochs 1 --trainer.limit_train_batches 1")
    finally:
        lightning_logger.removeHandler(handler)
    assert records and not any("litlogger" in message for message in records), records
    assert any("GPU available" in message for message in records)  # the rest of Lightning's output stays
