"""Which files are photos: in a class folder (by suffix, else by content) and among what ``predict`` is pointed at
(a file, a folder or a glob). No torch: ``predict`` on an ONNX graph lists its inputs without it."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from catdog_pl.core.errors import InputError
from catdog_pl.data.images import IMAGE_SUFFIXES

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


def expand_inputs(spec: str | os.PathLike) -> list[str]:
    """The image files named by ``spec``: one file, a folder (searched recursively, images by suffix), or a glob.

    A file named directly is always taken, whatever its suffix, so that a bad file gets its error row. In folders,
    images are found as in training (:func:`is_image_file`: by suffix, else by content); hidden files, thumbnail
    caches and notes are passed over.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return [text]
    if path.is_dir():
        found = sorted(
            os.path.join(root, name)
            for root, dirs, names in os.walk(path)
            for name in names
            if is_image_file(os.path.join(root, name))
            and not any(part.startswith(".") for part in Path(root).relative_to(path).parts)
        )
        if not found:
            raise InputError(f"{text}: folder holds no images ({', '.join(IMAGE_SUFFIXES)} in any case, or by content)")
        return found
    if glob.has_magic(text):
        found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"{text}: the pattern matches no files")
        return found
    raise InputError(f"{text}: no such file or folder")
