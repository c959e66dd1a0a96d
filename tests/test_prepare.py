"""`prepare` against a real HTTP server on 127.0.0.1 serving a small archive laid out as the public one."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from catdog_pl.cli import main
from catdog_pl.data.prepare import MARKER, PrepareError, prepare


def build_archive(per_class: int = 12) -> tuple[bytes, set[str]]:
    """A zip like kagglecatsanddogs: PetImages/{Cat,Dog}/N.jpg, with bad files among them; returns the bad ones."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    bad = set()
    with zipfile.ZipFile(buffer, "w") as zf:
        for folder, bright in (("Cat", False), ("Dog", True)):
            for i in range(per_class):
                pixels = rng.integers(150 if bright else 0, 256 if bright else 100, (24, 30, 3), dtype=np.uint8)
                jpeg = io.BytesIO()
                Image.fromarray(pixels).save(jpeg, format="JPEG")
                zf.writestr(f"PetImages/{folder}/{i}.jpg", jpeg.getvalue())
            zf.writestr(f"PetImages/{folder}/{per_class}.jpg", b"")  # zero bytes
            zf.writestr(f"PetImages/{folder}/{per_class + 1}.jpg", jpeg.getvalue()[:120])  # truncated
            zf.writestr(f"PetImages/{folder}/{per_class + 2}.jpg", b"GIF89a not really")  # not a JPEG
            zf.writestr(f"PetImages/{folder}/Thumbs.db", b"\xd0\xcf\x11\xe0")
            bad |= {f"PetImages/{folder}/{per_class + k}.jpg" for k in range(3)}
        zf.writestr("readme[1].txt", "Microsoft Research")
    return buffer.getvalue(), bad


class ArchiveServer:
    """Serves one file with Range support; can drop the connection halfway through its first answer."""

    def __init__(self, payload: bytes, drop_first: bool = False) -> None:
        self.payload, self.drop_first, self.requests = payload, drop_first, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.headers.get("Range"))
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_first:
                    server.drop_first = False
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-download
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/kagglecatsanddogs.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_prepare_builds_the_layout_and_a_second_run_does_nothing(tmp_path, capsys):
    payload, bad = build_archive()
    out = tmp_path / "dataset"
    with ArchiveServer(payload) as server:
        main(["prepare", "--out", str(out), "--url", server.url, "--train", "16", "--test", "8",
              "--sha256", hashlib.sha256(payload).hexdigest()])  # fmt: skip
        for split, count in (("training_set", 8), ("test_set", 4)):
            for name in ("cats", "dogs"):
                assert len(list((out / split / name).glob("*.jpg"))) == count
        removed = (out / "removed_files.csv").read_text().splitlines()
        assert {line.split(",")[0] for line in removed[1:]} == bad
        assert (out / MARKER).is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]  # no temporary folder, no download left
        requests = len(server.requests)
        main(["prepare", "--out", str(out), "--url", server.url, "--train", "16", "--test", "8"])
        assert len(server.requests) == requests  # nothing downloaded again
        assert "already prepared" in capsys.readouterr().out
    from catdog_pl.data.datamodule import CatDogDataModule

    dm = CatDogDataModule(data_dir=str(out))
    dm.setup("fit")
    assert dm.class_names == ["cats", "dogs"] and len(dm.train_set) == 16 and len(dm.skipped) == 0


def test_prepare_split_is_seeded(tmp_path):
    payload, _ = build_archive()
    with ArchiveServer(payload) as server:
        listings = []
        for name, seed in (("a", 1), ("b", 1), ("c", 2)):
            prepare(tmp_path / name, server.url, train=0.5, test=0.25, seed=seed)
            listings.append(sorted(p.name for p in (tmp_path / name / "test_set" / "cats").iterdir()))
    assert listings[0] == listings[1] != listings[2]
    assert len(listings[0]) == 3  # a quarter of the 12 readable cats


def test_a_dropped_connection_resumes(tmp_path):
    payload, _ = build_archive()
    with ArchiveServer(payload, drop_first=True) as server:
        prepare(tmp_path / "dataset", server.url, sha256=hashlib.sha256(payload).hexdigest(), train=16, test=8)
    assert server.requests[0] is None and server.requests[1].startswith("bytes=") and server.requests[1] != "bytes=0-"
    assert (tmp_path / "dataset" / MARKER).is_file()


def test_checksum_mismatch_is_a_clear_error_leaving_nothing(tmp_path):
    payload, _ = build_archive()
    with ArchiveServer(payload) as server, pytest.raises(PrepareError, match="SHA-256 .* does not match"):
        prepare(tmp_path / "dataset", server.url, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_build_never_looks_complete(tmp_path, monkeypatch):
    payload, _ = build_archive()
    import catdog_pl.data.prepare as prep

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the user presses Ctrl-C while the photos are checked

    monkeypatch.setattr(prep, "scan", crash)
    with ArchiveServer(payload) as server, pytest.raises(KeyboardInterrupt):
        prepare(tmp_path / "dataset", server.url, keep_download=True)
    assert not (tmp_path / "dataset").exists()
    assert not list(tmp_path.glob(".dataset.building*"))


def test_a_folder_that_is_not_a_finished_data_set_is_not_touched(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="exists but is not a finished data set"):
        prepare(tmp_path / "dataset", "http://127.0.0.1:9/never-asked.zip")
    assert (tmp_path / "dataset" / "mine.txt").read_text() == "keep me"


def test_prepare_errors_exit_with_one_line(tmp_path, capsys):
    with ArchiveServer(b"this is not a zip") as server, pytest.raises(SystemExit) as info:
        main(["prepare", "--out", str(tmp_path / "dataset"), "--url", server.url])
    assert info.value.code == 2
    assert "not a zip archive" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
