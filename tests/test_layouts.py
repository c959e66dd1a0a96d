"""Any folder of photos, any number of classes: each layout is read as documented, its errors name the folder and
what was wrong, a split drawn from the training photos is reproducible and never overlaps them, and 3- and
12-class data go through fit, test, predict, export and resume on the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.core.errors import DataLayoutError
from catdog_pl.data.folders import is_image_file
from catdog_pl.data.layouts import read_layout
from catdog_pl.inference.predictor import Predictor

from .helpers import CONFIG, NO_FILES, make_classes, make_dataset, read_csv, run


def names(samples) -> set[str]:
    return {path for path, _ in samples}


def test_the_original_layout_validates_on_test_set(tmp_path):
    layout = read_layout(make_dataset(tmp_path / "d", n_train=6, n_test=3), is_image_file)
    assert layout.class_names == ["cats", "dogs"]
    assert (len(layout.train), len(layout.val), len(layout.test)) == (12, 6, 6)
    assert layout.val == layout.test
    assert layout.describe() == "layout: training_set/ + test_set/ + test_set/, 2 classes, 12 / 6 / 6 photos " \
        "(train / val / test)"  # fmt: skip


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_train_val_test_folders(tmp_path, val_name):
    root = make_classes(tmp_path / "d", 3, {"train": 4, val_name: 2, "test": 3})
    layout = read_layout(root, is_image_file)
    assert layout.class_names == ["c00", "c01", "c02"]
    assert (len(layout.train), len(layout.val), len(layout.test)) == (12, 6, 9)
    assert layout.sources == {"train": "train/", "val": f"{val_name}/", "test": "test/"}


def test_train_and_test_only_validate_on_test_as_ultralytics_does(tmp_path):
    layout = read_layout(make_classes(tmp_path / "d", 3, {"train": 4, "test": 2}), is_image_file)
    assert layout.val == layout.test and len(layout.test) == 6


def test_a_bare_folder_is_split_stratified_reproducibly_and_never_overlapping(tmp_path):
    root = make_classes(tmp_path / "d", 4, {"train": 10}, layout="folder")
    first = read_layout(root, is_image_file, test_split=0.2, seed=7)
    again = read_layout(root, is_image_file, test_split=0.2, seed=7)
    other = read_layout(root, is_image_file, test_split=0.2, seed=8)
    assert (first.train, first.val, first.test) == (again.train, again.val, again.test)
    assert names(first.val) != names(other.val)
    assert (len(first.train), len(first.val), len(first.test)) == (24, 8, 8)  # 0.2 val, 0.2 test of 40
    assert not names(first.train) & (names(first.val) | names(first.test)) and not names(first.val) & names(first.test)
    for split in (first.val, first.test):  # stratified: 2 of each class's 10
        assert np.bincount([target for _, target in split]).tolist() == [2, 2, 2, 2]
    plain = read_layout(root, is_image_file)  # no test_split: test evaluates the held-out validation photos
    assert plain.test == plain.val and len(plain.val) == 8


def test_a_labels_csv_with_and_without_a_split_column(tmp_path):
    with_split = read_layout(make_classes(tmp_path / "a", ["cat", "dog", "fox"], {"train": 4, "valid": 2},
                                          layout="csv"), is_image_file)  # fmt: skip
    assert with_split.class_names == ["cat", "dog", "fox"] and (len(with_split.train), len(with_split.val)) == (12, 6)
    without = read_layout(make_classes(tmp_path / "b", 3, {"train": 5}, layout="csv"), is_image_file)
    assert (len(without.train), len(without.val)) == (12, 3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root: root, "data_dir not found; accepted layouts"),
        (lambda root: make_classes(root, 1, {"train": 3}, layout="folder"), "found 1 class folder(s)"),
        (lambda root: (make_classes(root, 3, {"train": 3, "val": 2}), shutil.rmtree(root / "val" / "c01"))[0],
         "class folders ['c00', 'c02'] differ from"),
        (lambda root: (make_classes(root, 3, {"train": 3, "val": 2}),
                       [p.unlink() for p in (root / "val" / "c02").iterdir()])[0],
         "val/c02: class folder holds no images"),
        (lambda root: (make_classes(root, 3, {"train": 3}, layout="folder"),
                       [p.unlink() for p in sorted((root / "c01").iterdir())[1:]])[0],
         "classes with fewer than 2 training photos: c01 (1)"),
    ],
    ids=["missing", "one-class", "differing-classes", "empty-class-in-a-split", "one-photo-class"],
)  # fmt: skip
def test_layout_errors_name_the_folder_and_what_was_expected(tmp_path, build, message):
    root = build(tmp_path / "d")
    with pytest.raises(DataLayoutError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_layout(root, is_image_file)


def test_csv_errors_name_the_file_and_line(tmp_path):
    csv_path = make_classes(tmp_path / "d", 2, {"train": 3, "val": 1}, layout="csv")
    text = csv_path.read_text()
    (tmp_path / "d" / "bad_split.csv").write_text(text.replace(",val\n", ",holdout\n", 1))
    with pytest.raises(DataLayoutError, match=r"bad_split.csv: line \d+: split 'holdout'"):
        read_layout(tmp_path / "d" / "bad_split.csv", is_image_file)
    (tmp_path / "d" / "no_label.csv").write_text("file,class\na.jpg,x\n")
    with pytest.raises(DataLayoutError, match="expected a header with columns path,label"):
        read_layout(tmp_path / "d" / "no_label.csv", is_image_file)
    (tmp_path / "d" / "missing.csv").write_text("path,label\nnowhere.jpg,x\nimages/train.c00.0.jpg,y\n")
    with pytest.raises(DataLayoutError, match="line 2: nowhere.jpg not found beside the CSV"):
        read_layout(tmp_path / "d" / "missing.csv", is_image_file)


def fit(data, root, *extra):
    return run("fit", "--config", CONFIG, "--data.data_dir", data, "--trainer.max_epochs", "2",
               "--data.batch_size", "8", "--trainer.logger.init_args.save_dir", root, *extra)  # fmt: skip


def test_three_classes_fit_test_predict_export_and_resume(tmp_path, capsys):
    data = make_classes(tmp_path / "d", ["ant", "bee", "wasp"], {"train": 10, "val": 4, "test": 5})
    cli = fit(data, tmp_path)
    assert cli.model.net.fc2.out_features == 3 and cli.model.hparams.task == "multiclass"
    assert tuple(cli.model.hparams.class_names) == ("ant", "bee", "wasp")
    run_dir = tmp_path / "lightning_logs" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert cli.datamodule.layout.describe().startswith("layout: train/ + val/ + test/, 3 classes, 30 / 12 / 15 photos")
    capsys.readouterr()

    tested = run("test", "--config", CONFIG, "--ckpt_path", last, "--data.data_dir", data,
                 "--trainer.logger.init_args.save_dir", tmp_path)  # fmt: skip
    out = capsys.readouterr().out
    summary = tested.model.test_summary
    assert summary.total == 15 and summary.accuracy >= 0.8, out  # three colours, learned in two epochs
    assert "precision  recall" in out and all(f"\n{label} " in out for label in ("ant", "bee", "wasp"))
    figures = json.loads((tmp_path / "lightning_logs" / "version_1" / "metrics.json").read_text())
    assert figures["n"] == 15 and [row["class"] for row in figures["per_class"]] == ["ant", "bee", "wasp"]
    assert sum(row["support"] for row in figures["per_class"]) == 15 and 0 < figures["accuracy_low95"] < 1
    assert figures["accuracy"] == pytest.approx(summary.accuracy) and "ece" in figures

    run("predict", "--ckpt_path", last, "--data.predict_path", data / "test", "--prediction.output",
        tmp_path / "p.csv", *NO_FILES)  # fmt: skip
    rows = read_csv(tmp_path / "p.csv")
    assert list(rows[0]) == ["path", "label", "probability", "p_ant", "p_bee", "p_wasp", "error"]
    for row in rows:
        probabilities = {label: float(row[f"p_{label}"]) for label in ("ant", "bee", "wasp")}
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
        assert row["label"] == max(probabilities, key=probabilities.get)
        assert float(row["probability"]) == pytest.approx(probabilities[row["label"]], abs=1e-6)
    predictor = Predictor.from_checkpoint(last, bf16=False)
    answer = predictor.predict(rows[0]["path"])
    assert set(answer.probabilities) == {"ant", "bee", "wasp"}

    onnxruntime = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    from catdog_pl.data.images import prepare_image

    main(["export", "--ckpt_path", str(last), "--output", str(tmp_path / "model.onnx")])
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["decision"]) == {"rule": "argmax"} and json.loads(meta["labels"]) == ["ant", "bee", "wasp"]
    paths = [row["path"] for row in rows]
    got = session.run(["probabilities"], {"image": np.stack([prepare_image(p, 64) for p in paths])})[0]
    assert got.shape == (15, 3)
    expected = torch.tensor([[float(row[f"p_{label}"]) for label in ("ant", "bee", "wasp")] for row in rows])
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=2e-2, rtol=0)  # predict may run bf16

    resumed = fit(data, tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", last)
    assert resumed.trainer.current_epoch == 3 and tuple(resumed.model.hparams.class_names) == ("ant", "bee", "wasp")


def test_twelve_classes_from_a_bare_folder_test_the_held_out_photos(tmp_path, capsys):
    data = make_classes(tmp_path / "d", 12, {"train": 10}, layout="folder")
    fit(data, tmp_path, "--data.test_split", "0.2", "--trainer.max_epochs", "1")
    run_dir = tmp_path / "lightning_logs" / "version_0"
    held = read_csv(run_dir / "split.csv")
    test_files = {str(data / row["path"]) for row in held if row["split"] == "test"}
    assert len(test_files) == 24 and {row["split"] for row in held} == {"val", "test"}
    # test is given other split options: it takes the checkpoint's, and evaluates its held-out test photos
    tested = run("test", "--ckpt_path", run_dir / "checkpoints" / "last.ckpt", "--data.data_dir", data,
                 "--data.test_split", "0.5", "--data.seed", "3", *NO_FILES)  # fmt: skip
    assert tested.model.test_summary.total == 24
    assert {path for path, _ in tested.datamodule.layout.test} == test_files
    assert not test_files & {path for path, _ in tested.datamodule.layout.train}
    out = capsys.readouterr().out
    assert "top-5" in out and "c11" in out
