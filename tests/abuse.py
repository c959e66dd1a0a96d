"""Hostile uploads for ``serve`` and a driver that sends them while well-behaved clients post real photos: shared
by ``tests/test_serve_abuse.py`` (small files) and ``benchmarks/serve_abuse.py`` (the full-size ones)."""

from __future__ import annotations

import io
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import requests
from PIL import Image


def rgba_png(width: int, height: int) -> bytes:
    """A half-transparent RGBA PNG of one colour: 9,000 x 9,000 is 334 KB on the wire and 324 MB decoded."""
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (255, 0, 0, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_header(width: int, height: int) -> bytes:
    """A small JPEG whose start-of-frame claims ``width`` x ``height`` pixels (its scan data is an 8 x 8 image's)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline start of frame: length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def eps() -> bytes:
    """An EPS file (Pillow would run Ghostscript to decode it, where installed)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format="EPS")
    return buffer.getvalue()


def psd(width: int = 1000, height: int = 1000) -> bytes:
    """A Photoshop file header (RGB, 8 bits), as Pillow's PSD reader would take it."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">I", 0) * 3 + b"\x00" * 64


def photo(width: int = 640, height: int = 480) -> bytes:
    """A real PNG of noise (for truncating)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Bad:
    """A hostile upload and the status it must get."""

    name: str
    data: bytes
    status: int
    content_type: str = "image/png"


def bad_uploads(max_upload_bytes: int, big_side: int = 9000, header_side: int = 10_000) -> list[Bad]:
    """One of each kind: the RGBA PNG of ``big_side`` squared, a JPEG header of ``header_side`` squared, an EPS, a
    PSD, a body one byte over the limit, and truncated JPEG and PNG files."""
    good = photo()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(good)).convert("RGB").save(jpeg, format="JPEG")
    return [
        Bad("rgba.png", rgba_png(big_side, big_side), 413),
        Bad("header.jpg", jpeg_header(header_side, header_side), 413, "image/jpeg"),
        Bad("image.eps", eps(), 415, "application/postscript"),
        Bad("image.psd", psd(), 415, "image/vnd.adobe.photoshop"),
        Bad("big.jpg", b"\xff" * (max_upload_bytes + 1), 413, "image/jpeg"),
        Bad("cut.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 3], 400, "image/jpeg"),
        Bad("cut.png", good[: len(good) // 2], 400),
    ]


@dataclass
class AttackResult:
    good_latencies: list[float] = field(default_factory=list)
    good_wrong: list[str] = field(default_factory=list)  # "name: what came back"
    bad_counts: dict[str, int] = field(default_factory=dict)
    bad_wrong: list[str] = field(default_factory=list)
    peak_rss: int = 0

    def p99_ms(self) -> float:
        return float(np.percentile(self.good_latencies, 99) * 1000) if self.good_latencies else float("nan")


def attack(
    url: str,
    good: Sequence[tuple[str, bytes, str]],
    bad: Sequence[Bad],
    good_clients: int = 16,
    bad_clients: int = 4,
    rounds: int = 2,
    bad_rounds: int = 3,
    until_good_done: bool = False,
    rss: Callable[[], int] | None = None,
) -> AttackResult:
    """``good_clients`` threads post every ``(name, bytes, label)`` of ``good`` ``rounds`` times between them, as
    multipart uploads, while ``bad_clients`` threads each post every ``bad`` upload ``bad_rounds`` times (as raw
    bodies and as multipart, alternately), and on until the good clients are done with ``until_good_done``;
    ``rss()`` (total bytes) is sampled meanwhile for the peak."""
    result = AttackResult()
    lock = threading.Lock()
    jobs = iter([item for _ in range(rounds) for item in good])
    done = threading.Event()
    good_done = threading.Event()

    def good_client() -> None:
        session = requests.Session()
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                return
            name, data, label = job
            start = time.perf_counter()
            try:
                answer = session.post(f"{url}/predict", files={"file": (name, data, "image/jpeg")}, timeout=120)
                got = answer.json().get("label") if answer.status_code == 200 else f"{answer.status_code} {answer.text}"
            except (requests.RequestException, ValueError) as error:
                got = f"{type(error).__name__}: {error}"
            elapsed = time.perf_counter() - start
            with lock:
                result.good_latencies.append(elapsed)
                if got != label:
                    result.good_wrong.append(f"{name}: expected {label}, got {got}"[:300])

    def bad_client(offset: int) -> None:
        session = requests.Session()
        round_index = 0
        while round_index < bad_rounds or (until_good_done and not good_done.is_set()):
            round_index += 1
            for index in range(len(bad)):
                item = bad[(index + offset) % len(bad)]
                raw = (round_index + index + offset) % 2 == 0
                try:
                    if raw:
                        answer = session.post(
                            f"{url}/predict", data=item.data, headers={"Content-Type": item.content_type}, timeout=120
                        )
                    else:
                        files = {"file": (item.name, item.data, item.content_type)}
                        answer = session.post(f"{url}/predict", files=files, timeout=120)
                    got = answer.status_code
                    has_error = ("error" in answer.json()) == (item.status != 200)
                except (requests.RequestException, ValueError) as error:
                    got, has_error = f"{type(error).__name__}: {error}", False
                with lock:
                    result.bad_counts[item.name] = result.bad_counts.get(item.name, 0) + 1
                    if got != item.status or not has_error:
                        result.bad_wrong.append(f"{item.name} ({'raw' if raw else 'multipart'}): expected "
                                                f"{item.status}, got {got}"[:300])  # fmt: skip

    def sample() -> None:
        while not done.is_set():
            result.peak_rss = max(result.peak_rss, rss())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True) if rss else None
    if sampler:
        sampler.start()
    goods = [threading.Thread(target=good_client) for _ in range(good_clients)]
    bads = [threading.Thread(target=bad_client, args=(offset,)) for offset in range(bad_clients)]
    for thread in goods + bads:
        thread.start()
    for thread in goods:
        thread.join()
    good_done.set()
    for thread in bads:
        thread.join()
    done.set()
    if sampler:
        sampler.join()
    return result
