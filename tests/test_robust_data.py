"""Data that fights back: bad files set aside and reported, odd formats accepted, wrong layouts named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_pl.cli import main
from catdog_pl.core.errors import DataLayoutError
from catdog_pl.data.datamodule import CatDogDataModule

from .helpers import CONFIG, QUIET, add_bad_files, read_report, write_image


@pytest.mark.parametrize("cache", ["true", "false"], ids=["cached", "streaming"])
def test_bad_files_are_set_aside_and_reported(tiny_data, tmp_path, monkeypatch, cache):
    bad = add_bad_files(tiny_data / "training_set" / "cats")
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", "--config", str(CONFIG), "--data.data_dir", str(tiny_data), "--trainer.max_epochs", "2",
                "--data.cache", cache, "--data.max_bad_fraction", "0.2", *QUIET,
                "--data.num_workers", "0"])  # fmt: skip
    assert cli.trainer.current_epoch == 2
    report = read_report(tmp_path / "lightning_logs" / "version_0" / "skipped_images.csv")
    assert set(report) == bad  # exactly the bad files: no junk, no good photo
    assert "empty" in report[str(tiny_data / "training_set" / "cats" / "zero.jpg")][0]
    if cache == "false":  # the header scan passes a cut JPEG; it fails on decode, mid-epoch, and is skipped
        assert report[str(tiny_data / "training_set" / "cats" / "cut.jpg")][1] == "training"
    assert len(cli.datamodule.train_set) == (32 if cache == "true" else 33)  # streaming keeps cut.jpg listed


def test_full_scan_catches_cut_files_at_setup(tiny_data):
    bad = add_bad_files(tiny_data / "training_set" / "dogs")
    dm = CatDogDataModule(data_dir=str(tiny_data), cache=False, full_scan=True, num_workers=0, max_bad_fraction=0.2)
    dm.setup("fit")
    assert set(dm.skipped.entries) == bad and {when for _, when in dm.skipped.entries.values()} == {"setup"}
    assert len(dm.train_set) == 32


def test_too_many_bad_files_is_an_error(tiny_data):
    add_bad_files(tiny_data / "training_set" / "dogs")
    dm = CatDogDataModule(data_dir=str(tiny_data), max_bad_fraction=0.1, num_workers=0)
    with pytest.raises(DataLayoutError, match=r"6 of 38 files are unreadable, over max_bad_fraction=0.1"):
        dm.setup("fit")


def test_formats_modes_and_sizes_users_have(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("training_set", "test_set"):
        for name in ("cats", "dogs"):
            for copy in ("plain.jpg", "plain2.jpg"):  # a class needs 2 photos
                write_image(tmp_path / split / name / copy, rng, bright=name == "dogs")
    cats = tmp_path / "training_set" / "cats"
    pixels = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(cats / "a.png")
    Image.fromarray(pixels).save(cats / "b.webp")
    Image.fromarray(pixels).save(cats / "c.bmp")
    frames = [Image.fromarray(pixels).convert("P"), Image.fromarray(255 - pixels).convert("P")]
    frames[0].save(cats / "d.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(pixels).save(cats / "E.JPEG")
    Image.fromarray(pixels).save(cats / "no_suffix", format="JPEG")  # found by content
    Image.fromarray(pixels).convert("CMYK").save(cats / "f.jpg")
    Image.fromarray(pixels).convert("LA").save(cats / "g.png")
    Image.fromarray(pixels[:33, :1]).save(cats / "thin.png")  # 1 x 33 px
    dm = CatDogDataModule(data_dir=str(tmp_path), num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 10 + 3 and len(dm.skipped) == 0
    assert dm.train_set.images.shape[1:] == (3, 80, 80)


def _no_training_set(root: Path) -> Path:
    shutil.rmtree(root / "training_set")
    return root / "training_set"


def _empty_class(root: Path) -> Path:
    for path in (root / "training_set" / "dogs").iterdir():
        path.unlink()
    (root / "training_set" / "dogs" / "notes.txt").write_text("nothing here yet")
    return root / "training_set" / "dogs"


def _no_images_at_all(root: Path) -> Path:
    for path in (root / "training_set").rglob("*.jpg"):
        path.unlink()
    return root / "training_set" / "cats"  # the first class folder found empty


@pytest.mark.parametrize("breaker", [_no_training_set, _empty_class, _no_images_at_all])
def test_more_wrong_layouts_name_the_path(tiny_data, breaker):
    culprit = breaker(tiny_data)
    with pytest.raises(DataLayoutError) as info:
        CatDogDataModule(data_dir=str(tiny_data), num_workers=0).setup("fit")
    assert str(info.value).startswith(str(culprit)) and "\n" not in str(info.value)
