"""predict: the CLI, the CSV, bad inputs, checkpoint safety, agreement with test, and the Python API."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from catdog_pl.cli import main
from catdog_pl.core import csvfile
from catdog_pl.core.errors import CheckpointError, ImageError, InputError
from catdog_pl.core.labels import label_of
from catdog_pl.data.images import load_rgb
from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.predictor import Predictor

from .helpers import CONFIG, PROBABILITY_ATOL, QUIET, make_bad_files, make_dataset, read_csv, write_image


def run_cli(*args: str):
    return main([str(arg) for arg in args] + [*QUIET, "--trainer.logger", "false"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data folder) of a short run on bright dogs and dark cats."""
    root = tmp_path_factory.mktemp("trained")
    data = make_dataset(root / "data", n_train=16, n_test=8)
    main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data), "--trainer.max_epochs", "6",
          "--data.batch_size", "8", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
          "--trainer.logger.init_args.save_dir", str(root)])  # fmt: skip
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", data


def test_predict_folder_writes_every_input_once_in_order(trained, tmp_path, capsys):
    checkpoint, data = trained
    folder = tmp_path / "photos"
    for source in sorted((data / "test_set").rglob("*.jpg")):
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    bad = make_bad_files(folder / "bad")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "Thumbs.db").write_bytes(b"\x00\x01")
    output = tmp_path / "out" / "predictions.csv"

    run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", folder, "--prediction.output", output)

    rows = read_csv(output)
    assert list(rows[0]) == ["path", "label", "probability", "p_cat", "p_dog", "error"]
    assert [row["path"] for row in rows] == expand_inputs(folder)  # each once, in input order
    assert len(rows) == 16 + len(bad)
    errors = {Path(row["path"]).name: row["error"] for row in rows if row["error"]}
    assert set(errors) == set(bad)
    for name, word in bad.items():
        assert errors[name].startswith(str(folder / "bad" / name)) and word in errors[name]
    good = [row for row in rows if not row["error"]]
    assert all(row["label"] == ("dog" if float(row["p_dog"]) >= 0.5 else "cat") for row in good)
    accuracy = np.mean([row["label"] == Path(row["path"]).parent.name[:-1] for row in good])
    assert accuracy >= 0.9  # bright dogs, dark cats
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"20 images: 16 predicted, 4 failed (threshold 0.5) -> {output}"
    table = out[-21:-1]  # the header, then the first 20 rows (of 20: no "... more rows" line)
    assert out[-22].split() == ["path", "label", "probability"]
    assert sum("error: " in line for line in table) == 4
    assert sum(line.split()[1] in ("cat", "dog") for line in table if "error: " not in line) == 16


def test_predict_agrees_with_test(trained, tmp_path):
    checkpoint, data = trained
    output = tmp_path / "predictions.csv"
    run_cli(
        "predict", "--ckpt_path", checkpoint, "--data.predict_path", data / "test_set", "--prediction.output", output
    )
    rows = read_csv(output)
    cli = run_cli("test", "--config", CONFIG, "--data.data_dir", data, "--ckpt_path", checkpoint)
    # The probabilities test computes, image by image, in test_set's order (the same sorted order as predict's),
    # on the device and in the precision both ran with (the GPU where there is one).
    device = cli.trainer.strategy.root_device
    model, dm = cli.model.eval().to(device), cli.datamodule
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=cli.trainer.precision == "bf16-mixed"),
    ):
        probs = [
            torch.sigmoid(model(dm.prepare_batch(batch, train=False)[0].to(device)).float()).cpu()
            for batch in dm.test_dataloader()
        ]
    np.testing.assert_allclose([float(row["p_dog"]) for row in rows], torch.cat(probs).numpy(), atol=PROBABILITY_ATOL)
    labels = [Path(row["path"]).parent.name[:-1] for row in rows]
    csv_accuracy = np.mean([row["label"] == label for row, label in zip(rows, labels, strict=True)])
    assert csv_accuracy == pytest.approx(float(cli.trainer.callback_metrics["test/acc"]))


def test_python_api_matches_cli(trained, tmp_path):
    checkpoint, data = trained
    paths = sorted(str(p) for p in (data / "test_set").rglob("*.jpg"))[:6]
    output = tmp_path / "p.csv"
    folder = tmp_path / "few"
    folder.mkdir()
    for i, path in enumerate(paths):
        (folder / f"{i}.jpg").write_bytes(Path(path).read_bytes())
    run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", folder, "--prediction.output", output)
    clf = Predictor.from_checkpoint(checkpoint)
    rows = clf.predict_many(paths)
    np.testing.assert_allclose(
        [r.probabilities["dog"] for r in rows], [float(r["p_dog"]) for r in read_csv(output)], atol=1e-6
    )
    one = clf.predict(paths[0])
    assert one.label in ("cat", "dog") and one.probability == pytest.approx(rows[0].probability)
    with Image.open(paths[0]) as img:  # a PIL image in any mode works too
        assert clf.predict_many([img.convert("L")])[0].ok
    with pytest.raises(ImageError, match="empty"):
        clf.predict(make_bad_files(tmp_path / "bad") and tmp_path / "bad" / "empty.jpg")


def test_threshold_from_checkpoint_and_override(trained, tmp_path):
    checkpoint, data = trained
    photo = sorted((data / "test_set" / "dogs").glob("*.jpg"))[0]
    output = tmp_path / "p.csv"
    run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", photo, "--prediction.output", output)
    p_dog = float(read_csv(output)[0]["p_dog"])
    strict = min(0.999, p_dog + (1 - p_dog) / 2)
    run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", photo, "--prediction.output", output,
            "--prediction.threshold", strict)  # fmt: skip
    assert read_csv(output)[0]["label"] == "cat"
    assert Predictor.from_checkpoint(checkpoint, threshold=strict).predict(photo).label == "cat"


def test_nothing_predictable_exits_non_zero(trained, tmp_path):
    checkpoint, _ = trained
    make_bad_files(tmp_path / "bad")
    with pytest.raises(SystemExit) as info:
        run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", tmp_path / "bad",
                "--prediction.output", tmp_path / "p.csv")  # fmt: skip
    assert info.value.code not in (0, None)
    assert len(read_csv(tmp_path / "p.csv")) == 4  # the error rows are still written


@pytest.mark.parametrize("kind", ["missing", "empty_folder", "glob"])
def test_inputs_naming_nothing_are_one_line_errors(trained, tmp_path, capsys, kind):
    checkpoint, _ = trained
    target = {"missing": tmp_path / "nope.jpg", "empty_folder": tmp_path / "empty", "glob": tmp_path / "*.png"}[kind]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(SystemExit) as info:
        run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", target)
    assert info.value.code == 2
    assert str(target) in capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_files_each_raise_a_message_naming_the_file(tmp_path):
    for name, word in make_bad_files(tmp_path).items():
        with pytest.raises(ImageError) as info:
            load_rgb(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name)) and word in str(info.value)
    with pytest.raises(ImageError, match="over the limit of 100"):
        load_rgb(write_image(tmp_path / "big.jpg", np.random.default_rng(0), True, (20, 20)), max_pixels=100)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    suffix = ".tif" if mode == "CMYK" else ".png"
    img = Image.new(mode, (30, 20), color=1 if mode == "1" else None)
    path = tmp_path / f"img{suffix}"
    img.save(path)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB" and loaded.size == (30, 20)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    array = np.full((8, 8), 32768, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    assert 120 <= np.asarray(load_rgb(path))[0, 0, 0] <= 135  # half of full scale, not 255


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # white left half
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "phone.jpg", exif=exif)
    loaded = load_rgb(tmp_path / "phone.jpg")
    assert loaded.size == (20, 40)
    assert np.asarray(loaded)[2, 10].mean() > 200  # the white half is now on top


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.marker),))


def test_non_checkpoints_are_refused_without_running_code(tmp_path, capsys):
    (tmp_path / "notes.ckpt").write_text("hello")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    _Payload.marker = str(tmp_path / "pwned")
    with open(tmp_path / "evil.ckpt", "wb") as handle:
        pickle.dump({"state_dict": _Payload()}, handle)
    for name in ("notes.ckpt", "other.ckpt", "evil.ckpt"):
        with pytest.raises(CheckpointError, match="not a catdog_pl checkpoint"):
            Predictor.from_checkpoint(tmp_path / name)
        with pytest.raises(SystemExit) as info:
            run_cli("predict", "--ckpt_path", tmp_path / name, "--data.predict_path", tmp_path)
        assert info.value.code == 2
        assert f"{tmp_path / name}: not a catdog_pl checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_labels_from_class_names():
    assert [label_of(n) for n in ("cats", "dogs", "Cat", "grass")] == ["cat", "dog", "Cat", "grass"]


def test_expand_inputs_by_suffix_any_case(tmp_path):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "a" / "B.JPG", rng, True)
    write_image(tmp_path / "a" / "c.jpeg", rng, True)
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "a" / "._B.JPG").write_bytes(b"resource fork")
    assert expand_inputs(tmp_path / "a") == [str(tmp_path / "a" / "B.JPG"), str(tmp_path / "a" / "c.jpeg")]
    assert expand_inputs(str(tmp_path / "a" / "*.JPG")) == [str(tmp_path / "a" / "B.JPG")]
    with pytest.raises(InputError, match="no such file or folder"):
        expand_inputs(tmp_path / "missing")


@pytest.mark.parametrize("trouble", ["not-a-folder", "disk-full"])
def test_a_csv_that_cannot_be_written_is_an_error_naming_it(trained, tmp_path, capsys, monkeypatch, trouble):
    checkpoint, data = trained
    if trouble == "not-a-folder":  # (as root, a read-only folder is still writable: a file in the way is not)
        (tmp_path / "out").write_text("a file where the folder should be")
        output = tmp_path / "out" / "predictions.csv"
    else:
        output = tmp_path / "predictions.csv"

        class FullDisk:
            def writerow(self, row):
                pass

            def writerows(self, rows):
                raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(csvfile.csv, "writer", lambda handle: FullDisk())
    with pytest.raises(SystemExit) as info:
        run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", data / "test_set",
                "--prediction.output", output)  # fmt: skip
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"catdog_pl: error: {output}: cannot write the CSV")
    assert not output.with_name(output.name + ".partial").exists()


def test_test_and_predict_without_a_logger_leave_the_working_folder_clean(trained, tmp_path, monkeypatch):
    checkpoint, data = trained
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_cli("test", "--ckpt_path", checkpoint, "--data.data_dir", data)
    run_cli("predict", "--ckpt_path", checkpoint, "--data.predict_path", data / "test_set",
            "--prediction.output", tmp_path / "p.csv")  # fmt: skip
    assert sorted(p.name for p in work.iterdir()) == []  # no config.yaml, no lightning_logs
