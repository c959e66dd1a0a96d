"""Photo folders as users have them: the original's layout checked with one-line errors, images found by content,
and unreadable files set aside (never fatal, never silent) with a report of each one and why."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import default_collate
from torchvision.datasets import ImageFolder

from catdog_pl.core.csvfile import write_csv_atomic
from catdog_pl.core.errors import DataLayoutError, ImageError
from catdog_pl.core.parallel import thread_map
from catdog_pl.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_rgb, verify_image

TRAIN_DIR = "training_set"
TEST_DIR = "test_set"
LAYOUT = "<data_dir>/{training_set,test_set}/{cats,dogs}/*.jpg"

#: First bytes of the image formats PIL reads here, to recognise images whatever their file names say.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_NOT_IMAGES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}


def is_image_file(path: str) -> bool:
    """Whether a file found in a class folder is taken as an image: by suffix (any case), else by its first bytes.

    Hidden files (``.DS_Store``, ``._photo.jpg``) and Windows thumbnails caches are passed over without a word; a
    file with an image suffix is taken even if its content turns out unreadable, so that it is reported.
    """
    name = os.path.basename(path)
    if name.startswith(".") or name.lower() in _NOT_IMAGES:
        return False
    if name.lower().endswith(IMAGE_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


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


def check_layout(data_dir: str | os.PathLike, splits: Sequence[str] = (TRAIN_DIR, TEST_DIR)) -> list[str]:
    """Check ``data_dir`` against the original's layout and return the class names."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataLayoutError(
            f"{root}: data_dir not found; expected the layout {LAYOUT} "
            "(pass --data.data_dir, or fetch the public set with: python -m catdog_pl prepare --out dataset)"
        )
    classes = None
    for split in splits:
        found = find_classes(root / split)
        if classes is not None and found != classes:
            raise DataLayoutError(f"{root / split}: class folders {found} differ from {root / splits[0]}'s {classes}")
        classes = found
    return classes


class SafeImageFolder(ImageFolder):
    """``ImageFolder`` that finds images by content, names empty class folders, and never dies on one bad file.

    A file that fails to load returns ``(None, target, message)``; :func:`collate_skip_bad` drops it from the
    batch and hands the message on, so that the data module reports it and the epoch goes on.
    """

    def __init__(self, root: str, transform: Callable | None = None, loader: Callable = load_rgb) -> None:
        for name in find_classes(Path(root)):
            folder = Path(root) / name
            if not any(is_image_file(str(folder / f)) for _, _, files in os.walk(folder) for f in files):
                raise DataLayoutError(f"{folder}: class folder holds no images; expected {LAYOUT}")
        super().__init__(root, transform=transform, loader=loader, is_valid_file=is_image_file)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only these samples (the ones that passed the scan)."""
        self.samples = [self.samples[i] for i in indices]
        self.imgs = self.samples
        self.targets = [target for _, target in self.samples]

    def __getitem__(self, index: int) -> tuple:
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except ImageError as error:
            return None, target, str(error)
        return (self.transform(image) if self.transform else image), target, ""


def collate_skip_bad(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the readable samples; return ``(images, targets, errors)`` with the unreadable ones' messages."""
    good = [(image, target) for image, target, _ in batch if image is not None]
    errors = [error for image, _, error in batch if image is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), errors
    images, targets = default_collate(good)
    return images, targets, errors


def check_image(path: str, full: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """``""`` if ``path`` reads as an image, else the one-line reason. Fast: header and ``verify``; full: decode."""
    try:
        (load_rgb if full else verify_image)(path, max_pixels=max_pixels)
    except ImageError as error:
        return str(error)
    return ""


def scan(
    paths: Sequence[str],
    full: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    desc: str = "",
    progress: bool = True,
) -> list[str]:
    """Check every file (threads; a progress bar unless ``progress`` is false); return one reason per path, ``""``
    for the good ones."""
    check = partial(check_image, full=full, max_pixels=max_pixels)
    return list(thread_map(check, paths, desc or "checking images", progress=progress))


class SkippedImages:
    """Every file set aside, with its reason, written as ``path,reason,when`` to a CSV in the run folder."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}

    def add(self, message: str, when: str) -> None:
        path = message.split(": ", 1)[0]
        self.entries.setdefault(path, (message, when))

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, output: str | os.PathLike) -> Path:
        rows = ([path, message[len(path) + 2 :], when] for path, (message, when) in self.entries.items())
        return write_csv_atomic(output, ("path", "reason", "when"), rows)


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
