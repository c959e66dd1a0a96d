"""``python -m catdog_pl prepare``: download the public "Kaggle Cats and Dogs" archive and lay it out as the
original's ``training_set/{cats,dogs}`` and ``test_set/{cats,dogs}``.

The archive (``PetImages/Cat``, ``PetImages/Dog``, about 25,000 photos) holds zero-byte and corrupt files; every
photo is decoded once and the unreadable ones are left out and listed in ``removed_files.csv``. The download
resumes where it stopped (HTTP ``Range``), its size and the zip's CRCs are checked (and its SHA-256 when given),
and the data set is built in a temporary folder renamed into place at the very end: an interrupted run never
leaves a folder that looks complete, and a finished one is recognised and not redone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path

from tqdm.auto import tqdm

from catdog_pl.core.errors import CatDogError
from catdog_pl.data.folders import TEST_DIR, TRAIN_DIR, SkippedImages, is_image_file, scan

DEFAULT_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
CLASSES = {"Cat": "cats", "Dog": "dogs"}
MARKER = ".catdog_prepared.json"
CHUNK = 1 << 20


class PrepareError(CatDogError):
    """The download or the archive is not what was expected."""


def download(url: str, target: Path, sha256: str | None = None, retries: int = 5, timeout: float = 60) -> Path:
    """Download ``url`` to ``target``, resuming a partial ``target.partial`` with HTTP Range requests.

    The size is checked against the server's Content-Length, and the SHA-256 against ``sha256`` when given; on a
    mismatch the partial file is deleted and :class:`PrepareError` raised.
    """
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    total = None
    for attempt in range(retries + 1):
        have = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status == 206:  # the server resumes where we stopped
                    total = have + int(response.headers["Content-Length"])
                else:  # a full answer: start again
                    have, total = 0, int(response.headers.get("Content-Length", 0)) or None
                with (
                    open(partial, "ab" if have else "wb") as handle,
                    tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, desc=f"downloading {target.name}"
                    ) as bar,
                ):
                    while chunk := response.read(CHUNK):
                        handle.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as error:
            if error.code == 416 and total is not None:  # nothing left to fetch
                break
            raise PrepareError(f"{url}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, HTTPException, OSError) as error:
            if attempt == retries:
                raise PrepareError(
                    f"{url}: download failed after {retries + 1} tries ({error}); run again to resume"
                ) from None
            print(f"download interrupted ({error}); resuming", file=sys.stderr)
            time.sleep(min(2**attempt, 30) * 0.1)
            continue
        if total is None or partial.stat().st_size >= total:
            break
        print(f"download stopped at {partial.stat().st_size:,} of {total:,} bytes; resuming", file=sys.stderr)
    size = partial.stat().st_size
    if total is not None and size != total:
        partial.unlink()
        raise PrepareError(f"{url}: got {size:,} bytes, the server announced {total:,}; removed the partial file")
    if sha256:
        digest = file_sha256(partial)
        if digest != sha256.lower():
            partial.unlink()
            raise PrepareError(f"{url}: SHA-256 {digest} does not match the expected {sha256}; removed the download")
    os.replace(partial, target)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive: Path, into: Path) -> dict[str, list[Path]]:
    """Check the zip's CRCs, extract ``PetImages/{Cat,Dog}`` and return the files of each class (sorted)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            broken = zf.testzip()
            if broken is not None:
                archive.unlink()
                raise PrepareError(f"{archive}: member {broken} fails its CRC check; removed it, run again")
            members = [m for m in zf.infolist() if not m.is_dir()]
            for member in tqdm(members, desc="extracting", unit="file", leave=False):
                parts = Path(member.filename).parts
                if len(parts) != 3 or parts[0] != "PetImages" or parts[1] not in CLASSES or ".." in parts:
                    continue
                zf.extract(member, into)
    except zipfile.BadZipFile as error:
        archive.unlink()
        raise PrepareError(f"{archive}: not a zip archive ({error}); removed it, check --url and run again") from None
    found = {}
    for folder, name in CLASSES.items():
        files = sorted(p for p in (into / "PetImages" / folder).glob("*") if p.is_file() and is_image_file(str(p)))
        if not files:
            raise PrepareError(f"{archive}: no photos under PetImages/{folder}/")
        found[name] = files
    return found


def split_counts(available: int, train: float, test: float) -> tuple[int, int]:
    """Per-class train and test counts: fractions of ``available`` below 1, else whole counts over both classes."""
    n_train = round(available * train) if train < 1 else int(train) // len(CLASSES)
    n_test = round(available * test) if test < 1 else int(test) // len(CLASSES)
    if n_train + n_test > available:
        raise PrepareError(f"asked for {n_train} + {n_test} photos per class, only {available} are readable")
    return n_train, n_test


def prepare(
    out: Path,
    url: str = DEFAULT_URL,
    sha256: str | None = None,
    train: float = 8000,
    test: float = 2000,
    seed: int = 42,
    keep_download: bool = False,
) -> Path:
    """Build ``out`` (see the module docstring); return it. A finished ``out`` with the same settings is kept."""
    settings = {"url": url, "train": train, "test": test, "seed": seed}
    marker = out / MARKER
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("settings") == settings:
            print(f"{out}: already prepared ({done['counts']}); nothing to do")
            return out
        raise PrepareError(f"{out}: prepared with other settings {done.get('settings')}; remove it or choose --out")
    if out.exists():
        raise PrepareError(f"{out}: exists but is not a finished data set; remove it or choose another --out")
    downloads = out.parent / f".{out.name}.download"
    building = out.parent / f".{out.name}.building"
    shutil.rmtree(building, ignore_errors=True)  # leftovers of an interrupted run
    try:
        archive = download(url, downloads / (Path(urllib.parse.urlparse(url).path).name or "archive.zip"), sha256)
        found = extract(archive, building / "extracted")
        removed = SkippedImages()
        readable = {}
        for name, files in found.items():
            reasons = scan([str(p) for p in files], full=True, desc=f"checking {name}")
            for reason in reasons:
                if reason:
                    removed.add(reason.replace(str(building / "extracted") + os.sep, ""), "prepare")
            readable[name] = [p for p, reason in zip(files, reasons, strict=True) if not reason]
        n_train, n_test = split_counts(min(len(files) for files in readable.values()), train, test)
        rng = random.Random(seed)
        for name, files in readable.items():
            files = files[:]
            rng.shuffle(files)
            for split, chosen in ((TRAIN_DIR, files[:n_train]), (TEST_DIR, files[n_train : n_train + n_test])):
                folder = building / "data" / split / name
                folder.mkdir(parents=True)
                for path in chosen:
                    os.replace(path, folder / f"{name[:-1]}.{path.name}")
        if len(removed):
            removed.write(building / "data" / "removed_files.csv")
        counts = {TRAIN_DIR: n_train * len(CLASSES), TEST_DIR: n_test * len(CLASSES), "removed": len(removed)}
        (building / "data" / MARKER).write_text(json.dumps({"settings": settings, "counts": counts}, indent=2))
        os.replace(building / "data", out)  # the one step that makes it visible, complete
    finally:
        shutil.rmtree(building, ignore_errors=True)
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()  # a failed download leaves nothing; a partial one stays to be resumed
    if not keep_download:
        shutil.rmtree(downloads, ignore_errors=True)
    print(f"{out}: {counts[TRAIN_DIR]} training and {counts[TEST_DIR]} test photos; {counts['removed']} unreadable "
          f"files left out{' (listed in removed_files.csv)' if counts['removed'] else ''}")  # fmt: skip
    return out


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catdog_pl prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("dataset"), help="the data set to build (default: dataset)")
    parser.add_argument("--url", default=DEFAULT_URL, help="the archive to download")
    parser.add_argument("--sha256", help="expected SHA-256 of the archive")
    parser.add_argument("--train", type=float, default=8000, help="training photos: a count over both classes, "
                        "or a fraction of the readable ones (default 8000, the tutorial's)")  # fmt: skip
    parser.add_argument("--test", type=float, default=2000, help="test photos, likewise (default 2000)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split")
    parser.add_argument("--keep_download", action="store_true", help="keep the downloaded archive")
    ns = parser.parse_args(args)
    prepare(ns.out, ns.url, ns.sha256, ns.train, ns.test, ns.seed, ns.keep_download)
