"""What the tests share: generated photo folders (bright dogs, dark cats, TorchGeo-style), bad files of every kind,
the command line run quietly, and readers for what it writes."""

from __future__ import annotations

import csv
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catdog_pl.cli import main
from catdog_pl.core.devices import bf16_is_fast

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cnn.yaml"
DDP_CONFIG = ROOT / "configs" / "ddp.yaml"
SHARED_DATA = ROOT.parent / "shared" / "data" / "cats_vs_dogs"
#: No bars, no model summary: what the tests read stays short.
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
#: No run folder, checkpoints or pictures: a fit whose only product is the model in memory.
NO_FILES = ["--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "null"]
#: How closely two runs' probabilities for one photo agree (predict against test, serve, DDP). In fp32 they are the
#: same numbers. Where bf16 autocast is the default (a GPU, a CPU with AVX-512 BF16 or AMX), each layer rounds to 8
#: significant bits and its kernels' sums depend on how photos are batched: the runs differ by up to about 2e-3
#: (measured on an AVX-512 BF16 EPYC), still far below the 0.9 that a photo given another's answer would show.
PROBABILITY_ATOL = 5e-3 if bf16_is_fast() else 1e-6
#: How closely two runs' accuracies on the same photos agree: exactly in fp32; in bf16 a photo whose probability lies
#: within about 2e-3 of the threshold can land on either side (1 of the 1,000 `test_set` photos did, on an AVX-512
#: BF16 EPYC).
ACCURACY_ATOL = 2e-3 if bf16_is_fast() else 1e-6


def run(*args: str | os.PathLike):
    """``main([...])`` in this process, quietly."""
    return main([str(arg) for arg in args] + QUIET)


def run_subprocess(args: list[str | os.PathLike], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m catdog_pl ...`` in a subprocess (DDP: Lightning's launcher starts the second process itself);
    fails the test with the end of its stderr unless it exits 0."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "catdog_pl", *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def write_image(path: Path, rng: np.random.Generator, bright: bool, size: tuple[int, int] = (40, 32)) -> Path:
    """A noisy photo-like JPEG: dark (values 0-110) or bright (145-255)."""
    low, high = (145, 256) if bright else (0, 111)
    pixels = rng.integers(low, high, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def make_dataset(root: Path, n_train: int = 16, n_test: int = 8, seed: int = 0) -> Path:
    """``root/{training_set,test_set}/{cats,dogs}/*.jpg``: cats dark, dogs bright, sizes varying."""
    rng = np.random.default_rng(seed)
    for split, count in (("training_set", n_train), ("test_set", n_test)):
        for label, name in enumerate(("cats", "dogs")):
            for i in range(count):
                size = (int(rng.integers(24, 72)), int(rng.integers(24, 72)))
                write_image(root / split / name / f"{name[:-1]}.{i}.jpg", rng, bright=bool(label), size=size)
    return root


def class_colour(index: int, count: int) -> tuple[int, int, int]:
    """A distinct colour for each of ``count`` classes: hues around the circle, bright and saturated."""
    import colorsys

    red, green, blue = colorsys.hsv_to_rgb(index / count, 0.9, 0.9)
    return int(red * 255), int(green * 255), int(blue * 255)


def write_class_image(path: Path, rng: np.random.Generator, colour: tuple[int, int, int]) -> Path:
    """A small JPEG of one colour with noise: a class a tiny network learns in a few epochs."""
    size = (int(rng.integers(24, 56)), int(rng.integers(24, 56)))
    noise = rng.integers(-25, 26, size=(size[1], size[0], 3))
    pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def make_classes(
    root: Path, classes: int | list[str], counts: dict[str, int], layout: str = "splits", seed: int = 0
) -> Path:
    """Photos of ``classes`` (names, or a count: ``c00``, ``c01``, ...) in one of the layouts:

    - ``splits``: ``root/<split>/<class>/*.jpg`` for each split of ``counts`` (``{"train": 8, "val": 4}``);
    - ``folder``: ``root/<class>/*.jpg``, ``counts["train"]`` each;
    - ``csv``: the photos in ``root/images/`` and ``root/labels.csv`` (``path,label[,split]``); returns the CSV.
    """
    rng = np.random.default_rng(seed)
    names = classes if isinstance(classes, list) else [f"c{i:02d}" for i in range(classes)]
    rows = []
    for split, count in counts.items():
        for index, name in enumerate(names):
            for i in range(count):
                if layout == "splits":
                    path = root / split / name / f"{name}.{i}.jpg"
                elif layout == "folder":
                    path = root / name / f"{name}.{split}.{i}.jpg"
                else:
                    path = root / "images" / f"{split}.{name}.{i}.jpg"
                write_class_image(path, rng, class_colour(index, len(names)))
                rows.append((str(path.relative_to(root)), name, split))
    if layout == "csv":
        with_split = set(counts) != {"train"}
        with open(root / "labels.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "split"] if with_split else ["path", "label"])
            writer.writerows(row if with_split else row[:2] for row in rows)
        return root / "labels.csv"
    return root


def label_accuracy(checkpoint: Path, folder: Path, bf16: bool) -> float:
    """The share of the photos in ``folder/<class>/`` that the Python API labels as their folder names them
    (``cats`` -> ``cat``): what ``test`` must report as its accuracy."""
    from catdog_pl.data.inputs import expand_inputs
    from catdog_pl.inference.predictor import Predictor

    rows = Predictor.from_checkpoint(checkpoint, bf16=bf16).predict_many(expand_inputs(folder))
    return float(np.mean([row.label == Path(row.path).parent.name[:-1] for row in rows]))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def png_bomb(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (400 megapixels by default)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


def make_bad_files(folder: Path) -> dict[str, str]:
    """One generated file of each bad kind; returns name -> a word its error message must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jpg").write_text("these are not pixels")
    (folder / "empty.jpg").write_bytes(b"")
    good = write_image(folder / "whole.jpg", np.random.default_rng(0), bright=True, size=(64, 64))
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    good.unlink()
    png_bomb(folder / "bomb.png")
    return {"notes.jpg": "not an image", "empty.jpg": "empty", "truncated.jpg": "truncated", "bomb.png": "bomb"}


def add_bad_files(folder: Path) -> set[str]:
    """Six kinds of unreadable file with image names, plus junk that is no image at all; returns the bad ones."""
    rng = np.random.default_rng(1)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "html.jpg").write_text("<html><body>404 Not Found</body></html>")
    (folder / "noise.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    whole = write_image(folder / "whole.jpg", rng, bright=False, size=(64, 64)).read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])  # header intact, data cut: fails only on decode
    (folder / "header_only.JPG").write_bytes(whole[:200])
    png_bomb(folder / "bomb.png")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "notes.txt").write_text("my cats")
    return {
        str(folder / name) for name in ("zero.jpg", "html.jpg", "noise.png", "cut.jpg", "header_only.JPG", "bomb.png")
    }


def read_report(path: Path) -> dict[str, tuple[str, str]]:
    with open(path, newline="") as handle:
        return {row["path"]: (row["reason"], row["when"]) for row in csv.DictReader(handle)}


def read_checkpoint(path):
    try:
        return torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None


def kill_after_epoch(command: list[str], cwd, last, epoch: int, timeout: float = 120) -> None:
    """Start ``command``; SIGKILL it once ``last`` holds ``epoch`` (the run is then inside a later epoch)."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            checkpoint = read_checkpoint(last) if last.is_file() else None
            if checkpoint is not None and checkpoint["epoch"] >= epoch:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def coordinate_image(size: int = 200) -> Image.Image:
    """Red encodes x and green encodes y, so the output's corners tell which window was sampled."""
    ramp = np.linspace(0, 255, size)
    red = np.broadcast_to(ramp[None, :], (size, size))
    green = np.broadcast_to(ramp[:, None], (size, size))
    return Image.fromarray(np.stack([red, green, np.zeros_like(red)], axis=-1).round().astype(np.uint8))
