"""The ``LightningDataModule``: the original's folder layout read with torchvision ``ImageFolder``."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder

from catdog_pl.transforms import (
    DEFAULT_SHEAR,
    DEFAULT_ZOOM,
    build_eval_transform,
    build_train_transform,
    train_source_size,
)

TRAIN_DIR = "training_set"
TEST_DIR = "test_set"
LAYOUT = "<data_dir>/{training_set,test_set}/{cats,dogs}/*.jpg"


class DataLayoutError(ValueError):
    """The data folder is not laid out as the original's ``training_set/`` and ``test_set/`` of two classes."""


def load_rgb(path: str | os.PathLike, min_size: int | None = None) -> Image.Image:
    """Open an image as RGB, the way every stage sees it.

    JPEGs are decoded with ``Image.draft`` straight to the smallest DCT scale (1/2, 1/4, 1/8) that still covers
    ``min_size`` on both sides, which is several times faster than a full decode for a 64-px network. EXIF
    orientation is applied, and any mode (L, LA, P, RGBA, CMYK, 16-bit) is converted to RGB.
    """
    with Image.open(path) as img:
        if min_size is not None and img.format == "JPEG":
            # draft keeps both sides >= the request; rotated EXIF swaps them, a square request is unaffected.
            img.draft("RGB", (min_size, min_size))
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16- and 32-bit integer images are scaled down, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite transparent pixels on white, as image viewers show them, rather than on black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def find_classes(split_dir: Path) -> list[str]:
    """The two class folders of one split, sorted (``cats`` = 0, ``dogs`` = 1), or a one-line error."""
    if not split_dir.is_dir():
        raise DataLayoutError(f"{split_dir}: folder not found; expected the layout {LAYOUT}")
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))
    if len(classes) != 2:
        found = ", ".join(classes) if classes else "none"
        raise DataLayoutError(
            f"{split_dir}: expected exactly 2 class folders (e.g. cats/ and dogs/), found {len(classes)}: {found}"
        )
    return classes


def check_layout(data_dir: str | os.PathLike, splits: tuple[str, ...] = (TRAIN_DIR, TEST_DIR)) -> list[str]:
    """Check ``data_dir`` against the original's layout and return the class names."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: data_dir not found; expected the layout {LAYOUT}")
    classes = None
    for split in splits:
        found = find_classes(root / split)
        if classes is not None and found != classes:
            raise DataLayoutError(f"{root / split}: class folders {found} differ from {root / splits[0]}'s {classes}")
        classes = found
    return classes


def stratified_split(targets: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) keeping each class's share; the same seed gives the same split."""
    generator = torch.Generator().manual_seed(seed)
    targets_t = torch.as_tensor(targets)
    train, val = [], []
    for label in torch.unique(targets_t).tolist():
        members = torch.nonzero(targets_t == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = round(len(members) * fraction)
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return sorted(train), sorted(val)


class CatDogDataModule(LightningDataModule):
    """Cats and dogs from folders laid out as the original's ``training_set/`` and ``test_set/``.

    Args:
        data_dir: folder holding ``training_set/{cats,dogs}`` and ``test_set/{cats,dogs}``.
        image_size: side of the square images the network sees (Keras ``target_size``).
        batch_size: images per batch, per process under DDP (Keras ``batch_size``).
        num_workers: DataLoader worker processes; ``None`` picks from the CPU cores available.
        val_split: 0 validates on ``test_set`` as the original did; above 0 holds out that fraction of
            ``training_set`` (stratified, seeded) and keeps ``test_set`` for ``test`` alone.
        seed: seed of the ``val_split`` hold-out.
        zoom: Keras ``zoom_range`` of the train augmentation.
        shear: Keras ``shear_range`` (degrees) of the train augmentation.
        hflip: Keras ``horizontal_flip``.
    """

    def __init__(
        self,
        data_dir: str = "dataset",
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int | None = None,
        val_split: float = 0.0,
        seed: int = 42,
        zoom: float = DEFAULT_ZOOM,
        shear: float = DEFAULT_SHEAR,
        hflip: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_split < 1.0:
            raise DataLayoutError(f"val_split must be in [0, 1), got {val_split}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.class_names: list[str] | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _folder(self, split: str, transform: Callable, min_size: int) -> ImageFolder:
        dataset = ImageFolder(
            str(self.data_dir / split), transform=transform, loader=partial(load_rgb, min_size=min_size)
        )
        if len(dataset) == 0:
            raise DataLayoutError(f"{self.data_dir / split}: no images found; expected the layout {LAYOUT}")
        return dataset

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.class_names = check_layout(self.data_dir)
        eval_transform = build_eval_transform(hp.image_size)
        if stage in ("fit", "validate"):
            source = train_source_size(hp.image_size, hp.zoom)
            train_transform = build_train_transform(hp.image_size, hp.zoom, hp.shear, hp.hflip)
            train_folder = self._folder(TRAIN_DIR, train_transform, source)
            if hp.val_split > 0:
                train_idx, val_idx = stratified_split(train_folder.targets, hp.val_split, hp.seed)
                self.train_set = Subset(train_folder, train_idx)
                self.val_set = Subset(self._folder(TRAIN_DIR, eval_transform, hp.image_size), val_idx)
            else:
                self.train_set = train_folder
                self.val_set = self._folder(TEST_DIR, eval_transform, hp.image_size)
        if stage == "test":
            self.test_set = self._folder(TEST_DIR, eval_transform, hp.image_size)

    def _dataloader(self, dataset: Dataset, train: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader(self.test_set)


def default_num_workers() -> int:
    """Workers that leave one core to the training process: 0 on one core, 1 on two, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores - 1, 8))
