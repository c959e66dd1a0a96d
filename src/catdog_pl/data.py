"""The ``LightningDataModule``: the original's folder layout read with torchvision ``ImageFolder``."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder

from catdog_pl.cache import CachedImages, available_cores, cache_nbytes, decode_all, passthrough_collate
from catdog_pl.errors import DataLayoutError, InputError
from catdog_pl.images import DEFAULT_MAX_PIXELS, load_rgb
from catdog_pl.prediction import PredictionSet, expand_inputs
from catdog_pl.transforms import (
    DEFAULT_SHEAR,
    DEFAULT_ZOOM,
    BatchTrainAugment,
    build_eval_transform,
    build_train_transform,
    train_source_size,
)

TRAIN_DIR = "training_set"
TEST_DIR = "test_set"
LAYOUT = "<data_dir>/{training_set,test_set}/{cats,dogs}/*.jpg"


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

    Two data paths give the same images to the network:

    - **cached** (the default where it fits): each photo is decoded once at setup (``Image.draft``, a thread per
      core) into an in-memory uint8 tensor, squashed to 80 px for training and to ``image_size`` for evaluation.
      Batches are one tensor index; the train augmentation runs per image on whole batches
      (:class:`~catdog_pl.transforms.BatchTrainAugment`) after the batch reaches its device, the GPU included,
      where the cache itself lives too. Evaluation images are bit-identical to the streaming path's.
    - **streaming**: ``ImageFolder`` with the PIL transforms of :mod:`catdog_pl.transforms` in worker processes,
      for data sets larger than ``cache_limit_mb``.

    Args:
        data_dir: folder holding ``training_set/{cats,dogs}`` and ``test_set/{cats,dogs}``.
        image_size: side of the square images the network sees (Keras ``target_size``); follows the model's.
        batch_size: images per batch, per process under DDP (Keras ``batch_size``).
        num_workers: DataLoader worker processes when streaming; ``None`` picks from the CPU cores (the cached
            path needs none).
        val_split: 0 validates on ``test_set`` as the original did; above 0 holds out that fraction of
            ``training_set`` (stratified, seeded) and keeps ``test_set`` for ``test`` alone.
        seed: seed of the ``val_split`` hold-out.
        zoom: Keras ``zoom_range`` of the train augmentation.
        shear: Keras ``shear_range`` (degrees) of the train augmentation.
        hflip: Keras ``horizontal_flip``.
        cache: ``True`` decodes once into memory, ``False`` streams from disk, ``None`` caches when the decoded
            images fit in ``cache_limit_mb``.
        cache_limit_mb: memory the cache may take before ``cache=None`` falls back to streaming.
        predict_path: what ``predict`` labels: an image file, a folder (searched recursively) or a glob.
        predict_batch_size: images per batch in ``predict`` (inference only, so larger batches run faster).
        max_image_pixels: larger images are refused unread (decompression-bomb guard; PIL's limit by default).
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
        cache: bool | None = None,
        cache_limit_mb: float = 1024.0,
        predict_path: str | None = None,
        predict_batch_size: int = 256,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_split < 1.0:
            raise DataLayoutError(f"val_split must be in [0, 1), got {val_split}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.class_names: list[str] | None = None
        self.cached: bool | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: PredictionSet | None = None
        self.batch_augment = BatchTrainAugment(image_size, zoom, shear, hflip)

    @property
    def num_workers(self) -> int:
        if self.cached:
            return 0  # batches are tensor indexing in this process
        return default_num_workers() if self.hparams.num_workers is None else self.hparams.num_workers

    def _folder(self, split: str, transform: Callable | None = None, min_size: int | None = None) -> ImageFolder:
        dataset = ImageFolder(
            str(self.data_dir / split),
            transform=transform,
            loader=partial(load_rgb, min_size=min_size, max_pixels=self.hparams.max_image_pixels),
        )
        if len(dataset) == 0:
            raise DataLayoutError(f"{self.data_dir / split}: no images found; expected the layout {LAYOUT}")
        return dataset

    def _use_cache(self, folders: list[ImageFolder], sides: list[int]) -> bool:
        if self.hparams.cache is not None:
            return self.hparams.cache
        need = sum(cache_nbytes(len(folder), side) for folder, side in zip(folders, sides, strict=True)) / 2**20
        if need > self.hparams.cache_limit_mb:
            rank_zero_warn(
                f"the decoded images need {need:.0f} MB, over cache_limit_mb={self.hparams.cache_limit_mb:.0f}: "
                "streaming them from disk instead (slower; raise data.cache_limit_mb to cache)"
            )
            return False
        return True

    def _cached(self, folder: ImageFolder, side: int, indices: list[int] | None = None) -> CachedImages:
        samples = folder.samples if indices is None else [folder.samples[i] for i in indices]
        images = decode_all([path for path, _ in samples], side, desc=f"decoding {Path(folder.root).name}")
        dataset = CachedImages(images, torch.tensor([target for _, target in samples]))
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        return dataset.to(device) if device is not None and device.type != "cpu" else dataset

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "predict":
            if not hp.predict_path:
                raise InputError("predict needs images: pass --data.predict_path <file | folder | glob>")
            self.cached = False
            self.predict_set = PredictionSet(expand_inputs(hp.predict_path), hp.image_size, hp.max_image_pixels)
            return
        self.class_names = check_layout(self.data_dir)
        source = train_source_size(hp.image_size, hp.zoom)
        if stage in ("fit", "validate"):
            train_folder = self._folder(TRAIN_DIR)
            val_folder = train_folder if hp.val_split > 0 else self._folder(TEST_DIR)
            self.cached = self._use_cache([train_folder, val_folder], [source, hp.image_size])
            train_idx, val_idx = None, None
            if hp.val_split > 0:
                train_idx, val_idx = stratified_split(train_folder.targets, hp.val_split, hp.seed)
            if self.cached:
                self.train_set = self._cached(train_folder, source, train_idx) if stage == "fit" else None
                self.val_set = self._cached(val_folder, hp.image_size, val_idx)
            else:
                self.train_set = self._streamed(
                    TRAIN_DIR, build_train_transform(hp.image_size, hp.zoom, hp.shear, hp.hflip), source, train_idx
                )
                self.val_set = self._streamed(
                    TRAIN_DIR if val_idx else TEST_DIR, build_eval_transform(hp.image_size), hp.image_size, val_idx
                )
        if stage == "test":
            test_folder = self._folder(TEST_DIR)
            self.cached = self._use_cache([test_folder], [hp.image_size])
            if self.cached:
                self.test_set = self._cached(test_folder, hp.image_size)
            else:
                self.test_set = self._streamed(TEST_DIR, build_eval_transform(hp.image_size), hp.image_size)
        if not self.cached and self.hparams.num_workers is None:
            # Workers decode; leave the training process the remaining cores, never more threads than cores.
            torch.set_num_threads(max(1, available_cores() - self.num_workers))
        path = "cached in memory" if self.cached else "streaming from disk"
        rank_zero_info(f"catdog_pl: {path} ({getattr(stage, 'value', stage)})")

    def _streamed(self, split: str, transform: Callable, min_size: int, indices: list[int] | None = None) -> Dataset:
        folder = self._folder(split, transform, min_size)
        return folder if indices is None else Subset(folder, indices)

    def prepare_batch(self, batch: tuple, train: bool) -> tuple:
        """Finish a cached uint8 batch on its device: augment it for training, else scale to [0, 1]."""
        if not isinstance(batch, (tuple, list)):  # e.g. the model summary's example input
            return batch
        images, *rest = batch  # (images, targets), or (images, indices, errors) when predicting
        if images.dtype == torch.uint8:
            images = self.batch_augment(images) if train else images.float().div_(255.0)
        return (images, *rest)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        return self.prepare_batch(batch, train=self.trainer is not None and self.trainer.training)

    def _dataloader(self, dataset: Dataset, train: bool = False, batch_size: int | None = None) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=train,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=passthrough_collate if isinstance(dataset, CachedImages) else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._dataloader(self.predict_set, batch_size=self.hparams.predict_batch_size)


def default_num_workers() -> int:
    """Streaming workers that leave one core to the training process: 0 on one core, 1 on two, at most 8."""
    return max(0, min(available_cores() - 1, 8))
