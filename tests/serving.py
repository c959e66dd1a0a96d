"""Helpers for the export, serve and browser tests: one tiny trained checkpoint, and the real server in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import catdog_pl
from catdog_pl.cli import main

from .helpers import CONFIG, make_dataset


def train_tiny_model(root: Path) -> tuple[Path, Path]:
    """(checkpoint, data folder): one epoch through the CLI on generated bright dogs and dark cats."""
    data = make_dataset(root / "data", n_train=16, n_test=8)
    main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data), "--trainer.max_epochs", "1",
          "--data.batch_size", "8", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
          "--trainer.logger.init_args.save_dir", str(root)])  # fmt: skip
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", data


def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """:func:`train_tiny_model`, trained once per test session and shared by the test modules that ask for it."""
    root = tmp_path_factory.getbasetemp() / "tiny_model"
    checkpoint = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    if checkpoint.is_file():
        return checkpoint, root / "data"
    return train_tiny_model(root)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


#: A ``sitecustomize.py`` under which importing any of ``names`` (or their submodules) fails.
FORBID_IMPORTS = """
import importlib.abc, sys

class Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in {names!r}:
            raise ImportError(f"{{fullname}} is forbidden in this test's server")
        return None

sys.meta_path.insert(0, Forbid())
"""


class Server:
    """``python -m catdog_pl serve ...`` on a free loopback port, stopped (SIGTERM, then SIGKILL) on exit.

    ``health_seen`` lists the distinct ``/health`` statuses met while waiting for 200, in order. With ``gate``, the
    model's workers wait for that file before loading, and it is written once ``/health`` has answered 503: the
    503 is seen however slowly the machine starts the processes.
    """

    def __init__(
        self, *args: str, log: Path, startup_s: float = 120.0, forbid: Sequence[str] = (), gate: bool = False
    ) -> None:
        self.port = free_port()
        self.forbid = tuple(forbid)
        self.url = f"http://127.0.0.1:{self.port}"
        self.gate = log.parent / f"{log.name}.gate" if gate else None
        gate_args = ("--setup_gate", str(self.gate)) if self.gate else ()
        self.args = ["serve", *args, *gate_args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path = log
        self.startup_s = startup_s
        self.health_seen: list[int] = []
        self.exited_on_sigterm = False

    def __enter__(self) -> Server:
        self.log = open(self.log_path, "w")
        # The package under test, whatever the current folder: PYTHONPATH=src is relative.
        source = str(Path(catdog_pl.__file__).resolve().parents[1])
        paths = [source, os.environ.get("PYTHONPATH")]
        if self.forbid:  # a sitecustomize that every process of the server runs first, its spawned workers too
            blocker = self.log_path.parent / "forbid_imports"
            blocker.mkdir(exist_ok=True)
            (blocker / "sitecustomize.py").write_text(FORBID_IMPORTS.format(names=self.forbid))
            paths.insert(0, str(blocker))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catdog_pl", *self.args],
            cwd=self.log_path.parent,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the finally below reaches every worker
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                status, _ = get(f"{self.url}/health", timeout=2.0)
            except OSError:
                status = 0  # not listening yet
            if not self.health_seen or self.health_seen[-1] != status:
                self.health_seen.append(status)
            if status == 503 and self.gate is not None:
                self.gate.touch()
            if status == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"server not healthy after {self.startup_s} s:\n{self.log_path.read_text()}")

    def pids(self) -> list[int]:
        """The server's processes: its own and those of its process group (workers, HTTP processes)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # the process group: the server's session leader
                found.append(int(stat.parent.name))
        return sorted(found)

    def rss_bytes(self) -> dict[int, int]:
        """pid -> resident memory of each of the server's processes (Linux)."""
        sizes = {}
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes[pid] = int(line.split()[1]) * 1024
            except OSError:
                continue
        return sizes

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to whatever is left; ``exited_on_sigterm`` says whether the server ended by itself."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=20)
                    self.exited_on_sigterm = True
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # whatever of its group is left
            self.process.wait(timeout=10)
            self.log.close()

    def __exit__(self, *exc_info) -> None:
        self.stop()
