"""The ``LightningDataModule``: the original's folder layout read with torchvision ``ImageFolder``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from catdog_pl.core.csvfile import write_csv_atomic
from catdog_pl.core.errors import DataLayoutError, InputError
from catdog_pl.core.parallel import default_num_workers
from catdog_pl.data.cache import CachedImages, cache_nbytes, decode_all, passthrough_collate
from catdog_pl.data.folders import LabelledImages, SkippedImages, collate_skip_bad, is_image_file, scan
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, decode_size, load_rgb
from catdog_pl.data.inputs import PredictionSet, expand_inputs
from catdog_pl.data.layouts import Layout, read_layout
from catdog_pl.data.transforms import (
    DEFAULT_SHEAR,
    DEFAULT_ZOOM,
    build_eval_transform,
    build_source_transform,
    train_augment,
)


class CatDogDataModule(LightningDataModule):
    """Photos of any number of classes, in any layout of :mod:`~catdog_pl.data.layouts`: the original's
    ``training_set/`` + ``test_set/``, ``train/`` + ``val/`` (+ ``test/``), a bare folder of class folders, or a
    labels CSV. ``setup`` prints the layout it found in one line.

    Two data paths give the same images to the network:

    - **cached** (the default where it fits): each photo is decoded once at setup (``Image.draft``, a thread per
      core) into an in-memory uint8 tensor, squashed to ``image_size`` for evaluation and for the keras
      augmentation, to 80 px for the crop augmentation.
      Batches are one tensor index; the train augmentation runs per image on whole batches
      (:class:`~catdog_pl.data.transforms.BatchTrainAugment`) after the batch reaches its device, the GPU included,
      where the cache itself lives too. Evaluation images are bit-identical to the streaming path's.
    - **streaming**: the photos read and squashed in worker processes, for data sets larger than ``cache_limit_mb``;
      training batches arrive as uint8 and get the same batched augmentation on their device.

    Unreadable files never end a run: setup sets them aside (the cache's decode checks every file; streaming
    checks headers, or decodes with ``full_scan``), a file failing later is skipped from its batch, and each one
    is listed with its reason in ``skipped_images.csv`` in the run folder. Above ``max_bad_fraction`` the data is
    taken to be wrong and setup stops with an error.

    Args:
        data_dir: the data: a folder in one of the layouts, or a labels CSV (``path,label[,split]``).
        image_size: side of the square images the network sees (Keras ``target_size``); follows the model's.
        interpolation: ``bilinear`` or ``bicubic``, the filter that squashes each photo; follows the model's.
        batch_size: images per batch, per process under DDP (Keras ``batch_size``).
        num_workers: DataLoader worker processes when streaming; ``None`` picks from the CPU cores.
        val_split: ``None`` (the default) validates on the layout's own validation split (the original's
            ``test_set``, as the original did; a ``val/`` folder) or, where it has none, on 0.2 of the training
            photos; a fraction holds out that share of the training photos (stratified, seeded) instead of the
            original's ``test_set``; a ``val/`` folder, where there is one, is always the validation split.
        test_split: where the layout has no test split, the share of the training photos held out for ``test``;
            0 (the default) tests on the validation photos, which are held out too. A checkpoint's ``test`` and
            ``validate`` repeat the split it was trained with (see the command line).
        seed: seed of the held-out splits.
        balanced_sampling: draw training batches with each class equally likely (a weighted sampler), for
            imbalanced data (not ``balance``, the model's class-weighted loss: Lightning logs the two hparams
            together and refuses one name with two values).
        augment: ``keras``: Keras's own augmentation (``zx``, ``zy``, shear and flip as one affine map, edges
            repeated on a zoom-out; ``configs/cnn.yaml``), or ``crop``: crops inside the photo (the default).
            :mod:`~catdog_pl.data.transforms` says how each Keras setting maps.
        zoom: Keras ``zoom_range`` of the train augmentation.
        shear: Keras ``shear_range`` (degrees) of the train augmentation.
        hflip: Keras ``horizontal_flip``.
        aspect: ``augment=crop`` only: the crop's aspect range (width / height); ``None`` follows ``zoom``.
        brightness: colour jitter, as torchvision ``ColorJitter(brightness=...)``; 0 (the original's) is off.
        contrast: colour jitter of contrast; 0 is off.
        saturation: colour jitter of saturation; 0 is off.
        erasing: probability of random erasing per training image; 0 is off.
        cache: ``True`` decodes once into memory, ``False`` streams from disk, ``None`` caches when the decoded
            images fit in ``cache_limit_mb``.
        cache_limit_mb: memory the cache may take before ``cache=None`` falls back to streaming.
        full_scan: when streaming, decode every file at setup instead of checking headers only.
        max_bad_fraction: the share of unreadable files in a split above which setup fails.
        predict_path: what ``predict`` labels: an image file, a folder (searched recursively) or a glob.
        predict_batch_size: images per batch in ``predict`` (results do not depend on it, only speed).
        max_image_pixels: larger images are refused unread (decompression-bomb guard; PIL's limit by default).
    """

    def __init__(
        self,
        data_dir: str = "dataset",
        image_size: int = 64,
        interpolation: str = "bilinear",
        batch_size: int = 32,
        num_workers: int | None = None,
        val_split: float | None = None,
        test_split: float = 0.0,
        seed: int = 42,
        balanced_sampling: bool = False,
        zoom: float = DEFAULT_ZOOM,
        shear: float = DEFAULT_SHEAR,
        hflip: bool = True,
        augment: str = "crop",
        aspect: tuple[float, float] | None = None,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        erasing: float = 0.0,
        cache: bool | None = None,
        cache_limit_mb: float = 1024.0,
        full_scan: bool = False,
        max_bad_fraction: float = 0.1,
        predict_path: str | None = None,
        predict_batch_size: int = 256,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        if val_split is not None and not 0.0 <= val_split < 1.0:
            raise DataLayoutError(f"val_split must be in [0, 1), got {val_split}")
        if not 0.0 <= test_split < 1.0 or (val_split or 0.0) + test_split >= 1.0:
            raise DataLayoutError(f"test_split must be in [0, 1) and leave training photos, got {test_split}")
        # The preprocessing is the model's (linked by the command line), logged and saved with it.
        self.save_hyperparameters(ignore=["image_size", "interpolation"])
        self.image_size, self.interpolation = image_size, interpolation
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.class_names: list[str] | None = None
        self.class_counts: list[int] | None = None  # training photos per class, for a balanced loss
        self.layout: Layout | None = None
        self.train_targets: list[int] = []
        self.cached: bool | None = None  # whether setup decoded the photos into memory
        self.train_set = self.val_set = self.test_set = None  # Datasets, assigned by setup
        self.predict_set: PredictionSet | None = None
        try:
            self.batch_augment = train_augment(image_size, self.hparams)
        except ValueError as error:
            raise DataLayoutError(f"data.{error}") from None
        self.skipped = SkippedImages()
        self._log_dir: str | None = None

    @property
    def num_workers(self) -> int:
        if self.cached:
            return 0  # batches are tensor indexing in this process
        return default_num_workers() if self.hparams.num_workers is None else self.hparams.num_workers

    @property
    def progress(self) -> bool:
        """Whether setup draws progress bars: where the Trainer draws its own (its first process, bar enabled), and
        without a Trainer."""
        trainer = self.trainer
        return trainer is None or (trainer.is_global_zero and trainer.progress_bar_callback is not None)

    @property
    def report_path(self) -> Path | None:
        """``skipped_images.csv`` in the run folder, or ``None`` without a trainer and logger."""
        return Path(self._log_dir) / "skipped_images.csv" if self._log_dir else None

    def read_layout(self) -> Layout:
        """The layout of ``data_dir`` with this module's splits (see :func:`~catdog_pl.data.layouts.read_layout`)."""
        hp = self.hparams
        return read_layout(self.data_dir, is_image_file, hp.val_split, hp.test_split, hp.seed)

    def _folder(self, split: str, transform: Callable, min_size: int) -> LabelledImages:
        min_size = decode_size(min_size, self.interpolation)
        loader = partial(load_rgb, min_size=min_size, max_pixels=self.hparams.max_image_pixels)
        return LabelledImages(getattr(self.layout, split), self.layout.sources[split], transform, loader)

    def _use_cache(self, counts_and_sides: list[tuple[int, int]]) -> bool:
        if self.hparams.cache is not None:
            return self.hparams.cache
        need = sum(cache_nbytes(count, side) for count, side in counts_and_sides) / 2**20
        if need > self.hparams.cache_limit_mb:
            rank_zero_warn(
                f"the decoded images need {need:.0f} MB, over cache_limit_mb={self.hparams.cache_limit_mb:.0f}: "
                "streaming them from disk instead (slower; raise data.cache_limit_mb to cache)"
            )
            return False
        return True

    def _screen(self, folder: LabelledImages, side: int | None) -> torch.Tensor | None:
        """Set aside the unreadable files of ``folder``; with ``side``, return the readable ones decoded (cache)."""
        hp = self.hparams
        paths = [path for path, _ in folder.samples]
        name = folder.root
        if side is not None:
            options = {
                "max_pixels": hp.max_image_pixels,
                "progress": self.progress,
                "interpolation": self.interpolation,
            }
            images, errors = decode_all(paths, side, desc=f"decoding {name}", **options)
        else:
            images = None
            errors = scan(paths, hp.full_scan, hp.max_image_pixels, desc=f"checking {name}", progress=self.progress)
        good = [i for i, error in enumerate(errors) if not error]
        bad = len(paths) - len(good)
        for error in errors:
            if error:
                self.skipped.add(error, "setup")
        if bad > self.hparams.max_bad_fraction * len(paths):
            raise DataLayoutError(
                f"{folder.root}: {bad} of {len(paths)} files are unreadable, over max_bad_fraction="
                f"{self.hparams.max_bad_fraction:g}; the data looks wrong (first: {next(e for e in errors if e)})"
            )
        if bad:
            where = f"listed in {self.report_path}" if self.report_path else f"first: {next(e for e in errors if e)}"
            rank_zero_warn(f"{folder.root}: set aside {bad} unreadable file(s) of {len(paths)}; {where}")
            folder.keep(good)
            images = images[good] if images is not None else None
        return images

    def _dataset(self, folder: LabelledImages, images: torch.Tensor | None) -> Dataset:
        if images is None:
            return folder
        dataset = CachedImages(images, torch.tensor(folder.targets))
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        return dataset.to(device) if device is not None and device.type != "cpu" else dataset

    def setup(self, stage: str) -> None:
        hp = self.hparams
        # trainer.log_dir is a collective under DDP: asked once here, where every process comes, and kept.
        # Lightning's log_dir without a logger is the working folder: no run folder then, and no reports.
        self._log_dir = self.trainer.log_dir if self.trainer is not None and self.trainer.logger is not None else None
        if stage == "predict":
            if not hp.predict_path:
                raise InputError("predict needs images: pass --data.predict_path <file | folder | glob>")
            self.cached = False
            inputs = expand_inputs(hp.predict_path)
            self.predict_set = PredictionSet(inputs, self.image_size, hp.max_image_pixels, self.interpolation)
            return
        self.layout = self.read_layout()
        self.class_names = list(self.layout.class_names)
        rank_zero_info(f"catdog_pl: {self.layout.describe()}")
        source = self.batch_augment.source_size
        eval_transform = build_eval_transform(self.image_size, self.interpolation)
        if stage in ("fit", "validate"):
            train = self._folder("train", build_source_transform(source, self.interpolation), source)
            val = self._folder("val", eval_transform, self.image_size)
            self.cached = self._use_cache([(len(train), source), (len(val), self.image_size)])
            if stage == "fit":
                train_images = self._screen(train, source if self.cached else None)
                self.train_set = self._dataset(train, train_images)
                counts = torch.bincount(torch.tensor(train.targets, dtype=torch.long), minlength=len(self.class_names))
                self.class_counts = counts.tolist()
                self.train_targets = list(train.targets)
                self._write_split()
            self.val_set = self._dataset(val, self._screen(val, self.image_size if self.cached else None))
        if stage == "test":
            test = self._folder("test", eval_transform, self.image_size)
            self.cached = self._use_cache([(len(test), self.image_size)])
            self.test_set = self._dataset(test, self._screen(test, self.image_size if self.cached else None))
        path = "cached in memory" if self.cached else "streaming from disk"
        rank_zero_info(f"catdog_pl: {path} ({getattr(stage, 'value', stage)})")
        self._write_report()

    def _write_split(self) -> None:
        """``split.csv`` in the run folder: every held-out file (``path,class,split``, paths relative to the data),
        so that what validated and what tests can be checked, and is never a training photo."""
        if self.report_path is None or not self.trainer.is_global_zero:
            return
        write_csv_atomic(self.report_path.with_name("split.csv"), ("path", "class", "split"), self.layout.held_out())

    def _write_report(self) -> None:
        """Rank 0 writes the report; another rank writes its own file only for files that failed in its shard."""
        if not len(self.skipped) or self.report_path is None:
            return
        if self.trainer.is_global_zero:
            self.skipped.write(self.report_path)
        elif any(when != "setup" for _, when in self.skipped.entries.values()):
            self.skipped.write(self.report_path.with_name(f"skipped_images.rank{self.trainer.global_rank}.csv"))

    def teardown(self, stage: str) -> None:
        self._write_report()  # with the files that failed mid-epoch, too

    def prepare_batch(self, batch: tuple, train: bool) -> tuple:
        """Finish a batch on its device: a cached uint8 batch is augmented for training, else scaled to [0, 1];
        a streamed batch's unreadable files (dropped by the collate) are reported."""
        if not isinstance(batch, (tuple, list)):  # e.g. the model summary's example input
            return batch
        if len(batch) == 3 and not (self.trainer is not None and self.trainer.predicting):
            images, targets, errors = batch
            for error in errors:
                if error.split(": ", 1)[0] not in self.skipped.entries:
                    warnings.warn(f"skipped an unreadable file: {error}", stacklevel=2)  # on every rank
                self.skipped.add(error, "training" if train else "evaluation")
            batch = (images, targets)
        images, *rest = batch  # (images, targets), or (images, indices, errors) when predicting
        if images.dtype == torch.uint8:
            images = self.batch_augment(images) if train else images.float().div_(255.0)
        return (images, *rest)

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        return self.prepare_batch(batch, train=self.trainer is not None and self.trainer.training)

    def _dataloader(self, dataset: Dataset, train: bool = False, batch_size: int | None = None) -> DataLoader:
        workers = self.num_workers
        if isinstance(dataset, CachedImages):
            collate = passthrough_collate
        elif isinstance(dataset, LabelledImages):
            collate = collate_skip_bad
        else:
            collate = None
        sampler = None
        if train and self.hparams.balanced_sampling:  # each class equally likely in every batch, drawn with replacement
            counts = torch.bincount(torch.as_tensor(self.train_targets)).float()
            weights = (1.0 / counts)[torch.as_tensor(self.train_targets)]
            generator = torch.Generator().manual_seed(self.hparams.seed)
            sampler = WeightedRandomSampler(weights.double(), len(weights), replacement=True, generator=generator)
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._dataloader(self.predict_set, batch_size=self.hparams.predict_batch_size)
