"""Tiny generated photo folders in the original's layout: bright dogs, dark cats (TorchGeo-style test data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cnn.yaml"
SHARED_DATA = ROOT.parent / "shared" / "data" / "cats_vs_dogs"


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


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder: what the CLI writes beside it (lightning_logs/, the config.yaml that
    LightningCLI saves when there is no logger) never lands in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "training_set").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA} (the project's ../shared/data/cats_vs_dogs)")
    return SHARED_DATA
