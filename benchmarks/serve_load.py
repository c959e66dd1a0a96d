"""Load test of ``python -m catdog_pl serve`` on loopback, against the offline ``Predictor.predict_many``.

    python benchmarks/serve_load.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Without --ckpt_path an untrained model is used (it costs the same to run). The server runs in a subprocess on a
free 127.0.0.1 port; clients are threads of this process, each with one keep-alive connection (http.client), posting
the 1000 ``test_set`` photos as raw ``image/jpeg`` bodies: 1 client (one photo at a time), 16 and 64 at once. Each
scenario sends every photo once; it reports images per second, p50 and p99 latency, and errors (any status but
200). The same run times ``predict_many`` on the same photos, and the README-style ONNX example (Python start,
onnxruntime import, one photo) in fresh processes. Clients and server share the machine's cores, as they would on
one host. Writes ``benchmarks/results/serve_<host>.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, machine  # noqa: E402

from catdog_pl.export import export_onnx  # noqa: E402
from catdog_pl.inputs import expand_inputs
from catdog_pl.module import CatDogModule  # noqa: E402
from catdog_pl.prediction import Predictor  # noqa: E402

COLUMNS = ("scenario", "clients", "images", "seconds", "images_per_s", "p50_ms", "p99_ms", "errors", "vs_offline")


def untrained_checkpoint(path: Path) -> Path:
    import lightning

    model = CatDogModule()
    state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    torch.save({**state, "pytorch-lightning_version": lightning.__version__}, path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: list[str], port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "catdog_pl", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(process)
    raise TimeoutError(f"server not ready:\n{log.read_text()}")


def stop_server(process: subprocess.Popen) -> None:
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load(port: int, photos: list[bytes], clients: int) -> tuple[float, np.ndarray, int]:
    """(seconds, latencies in s, errors) for ``clients`` threads posting every photo once between them."""
    next_index = iter(range(len(photos)))
    lock = threading.Lock()
    latencies = np.zeros(len(photos))
    errors = [0]

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", photos[index], {"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies[index] = time.perf_counter() - start
            if not ok:
                with lock:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies, errors[0]


def onnx_fresh_process(model: Path, photo: Path, repeats: int = 3) -> list[dict[str, float]]:
    """The docs' onnxruntime example in fresh processes: total wall time and its parts, in seconds."""
    text = (ROOT / "docs_use_a_model.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    example = example.replace('"model.onnx"', repr(str(model))).replace('"photo.jpg"', repr(str(photo)))
    timed = (
        "import time\n_t0 = time.perf_counter()\nimport onnxruntime\n_t1 = time.perf_counter()\n"
        + example
        + "\nprint('import', _t1 - _t0, 'rest', time.perf_counter() - _t1)\n"
    )
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True).stdout
        total = time.perf_counter() - start
        parts = out.split()
        runs.append({"total": total, "import": float(parts[-3]), "rest": float(parts[-1])})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", type=Path)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA / "test_set")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--batch_timeout", type=float, default=0.005)
    parser.add_argument("--server_args", default="", help="more serve options, e.g. '--fast_queue'")
    args = parser.parse_args()
    paths = expand_inputs(args.data_dir)
    photos = [Path(path).read_bytes() for path in paths]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or untrained_checkpoint(Path(tmp) / "untrained.ckpt")

        predictor = Predictor.from_checkpoint(ckpt)
        predictor.predict_many(paths[:64])  # warm-up
        start = time.perf_counter()
        offline_rows = predictor.predict_many(paths)
        offline_s = time.perf_counter() - start
        offline = len(paths) / offline_s
        rows.append(("offline predict_many", 0, len(paths), offline_s, offline, None, None,
                     sum(not row.ok for row in offline_rows), 1.0))  # fmt: skip
        del predictor

        port = free_port()
        server_args = ["--ckpt_path", str(ckpt), "--max_batch_size", str(args.max_batch_size),
                       "--batch_timeout", str(args.batch_timeout), *args.server_args.split()]  # fmt: skip
        server = start_server(server_args, port, Path(tmp) / "server.log")
        try:
            load(port, photos[:64], 4)  # warm-up
            for clients in args.clients:
                seconds, latencies, errors = load(port, photos, clients)
                rate = len(photos) / seconds
                rows.append((f"served, {clients} client{'s' * (clients > 1)}", clients, len(photos), seconds, rate,
                             1000 * np.percentile(latencies, 50), 1000 * np.percentile(latencies, 99), errors,
                             rate / offline))  # fmt: skip
        finally:
            stop_server(server)

        model = Path(tmp) / "model.onnx"
        export_onnx(ckpt, model)
        runs = onnx_fresh_process(model, Path(paths[0]))
    median = sorted(runs, key=lambda run: run["total"])[len(runs) // 2]

    print(f"machine: {machine()}, {os.cpu_count()} CPUs (shared with whatever else runs)")
    print(f"server: --max_batch_size {args.max_batch_size} --batch_timeout {args.batch_timeout}, 1 worker\n")
    print("| scenario | images/s | p50 ms | p99 ms | errors | vs offline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, _, _, _, rate, p50, p99, errors, share in rows:
        p50s, p99s = ("-", "-") if p50 is None else (f"{p50:.1f}", f"{p99:.1f}")
        print(f"| {name} | {rate:.0f} | {p50s} | {p99s} | {errors} | {100 * share:.0f} % |")
    print(
        f"\nONNX example in a fresh process (median of {len(runs)}): {median['total']:.2f} s in all, of which "
        f"onnxruntime import {median['import']:.2f} s and session + one photo {median['rest']:.2f} s"
    )

    out = ROOT / "benchmarks" / "results" / f"serve_{re.sub(r'[^A-Za-z0-9_.-]', '_', platform.node() or 'machine')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, "machine"])
        for row in rows:
            writer.writerow([*(f"{v:.4g}" if isinstance(v, float) else ("" if v is None else v) for v in row),
                             machine()])  # fmt: skip
        writer.writerow(["onnx example, fresh process", 1, 1, f"{median['total']:.4g}", "", "", "", 0, "", machine()])
    print(f"-> {out}")


if __name__ == "__main__":
    main()
