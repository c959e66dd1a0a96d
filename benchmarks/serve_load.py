"""Load test of ``python -m catdog_pl serve`` on loopback, against the offline ``Predictor.predict_many``, for each
runtime in one run: the checkpoint on PyTorch, its fp32 graph and an int8 graph (``export --quantize int8``) on
onnxruntime.

    python benchmarks/serve_load.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Without --ckpt_path an untrained model is used (it costs the same to run): the Keras CNN, or with
``--config configs/finetune.yaml`` that config's model. The server runs in a subprocess on a
free 127.0.0.1 port; clients are threads of this process, each with one keep-alive connection (http.client), posting
the 1000 ``test_set`` photos as raw ``image/jpeg`` bodies: 1 client (one photo at a time), 16 and 64 at once. Each
scenario sends every photo once; it reports images per second, p50 and p99 latency, and errors (any status but
200). The same run times ``predict_many`` on the same photos, and docs/deploying.md's ONNX example (Python start,
onnxruntime import, one photo) in fresh processes. Clients and server share the machine's cores, as they would on
one host. Prints a Markdown table and writes its rows to ``benchmarks/results/<machine>.csv`` (section ``serve``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, Results, untrained_checkpoint  # noqa: E402

sys.path.insert(0, str(ROOT))  # the serve tests' Server: the same start, wait for /health and stop
from catdog_pl.data.inputs import expand_inputs  # noqa: E402
from catdog_pl.inference.export import export_onnx, quantize_int8  # noqa: E402
from catdog_pl.inference.predictor import Predictor  # noqa: E402
from tests.serving import Server  # noqa: E402


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


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('s') else 's'}"


def onnx_fresh_process(model: Path, photo: Path, repeats: int = 3) -> list[dict[str, float]]:
    """docs/deploying.md's onnxruntime example in fresh processes: total wall time and its parts, in seconds."""
    text = (ROOT / "docs" / "deploying.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "import onnxruntime" in block)
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
    parser.add_argument("--config", type=Path, help="without --ckpt_path: an untrained model of this config's model:")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA / "test_set")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--batch_timeout", type=float, default=0.005)
    parser.add_argument("--server_args", default="", help="more serve options, e.g. '--workers 1'")
    parser.add_argument("--runtimes", nargs="+", default=["pytorch", "fp32", "int8"], choices=RUNTIMES)
    args = parser.parse_args()
    paths = expand_inputs(args.data_dir)
    photos = [Path(path).read_bytes() for path in paths]
    results = Results("serve_load.py")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or untrained_checkpoint(Path(tmp) / "untrained.ckpt", args.config)
        models = {"pytorch": ckpt, "fp32": Path(tmp) / "model.onnx", "int8": Path(tmp) / "int8.onnx"}
        export_onnx(ckpt, models["fp32"])
        if "int8" in args.runtimes:
            bound = 0.5 if args.ckpt_path else 100.0
            quantize_int8(ckpt, models["int8"], SHARED_DATA, max_accuracy_drop=bound, float_graph=models["fp32"])
        for runtime in args.runtimes:
            serve_one(args, runtime, models[runtime], paths, photos, Path(tmp), results)
        runs = onnx_fresh_process(models["fp32"], Path(paths[0]))
    median = sorted(runs, key=lambda run: run["total"])[len(runs) // 2]
    onnx = f"ONNX example in a fresh process, median of {len(runs)}"
    section = "serve: the onnxruntime example of docs/deploying.md"
    results.add(section, f"{onnx}: total", median["total"], "s")
    results.add(section, f"{onnx}: onnxruntime import", median["import"], "s")
    results.add(section, f"{onnx}: session + one photo", median["rest"], "s")


#: The runtimes served: the checkpoint on PyTorch, its fp32 graph and an int8 graph on onnxruntime.
RUNTIMES = ("pytorch", "fp32", "int8")


def serve_one(args, runtime: str, model: Path, paths: list[str], photos: list[bytes], tmp: Path, results) -> None:
    """Offline ``predict_many`` and the served load of one runtime, as rows of its own section."""
    rows = []
    predictor = Predictor.from_checkpoint(model, runtime="pytorch" if runtime == "pytorch" else "onnx")
    predictor.predict_many(paths[:64])  # warm-up
    start = time.perf_counter()
    offline_rows = predictor.predict_many(paths)
    offline_s = time.perf_counter() - start
    offline = len(paths) / offline_s
    rows.append(("offline predict_many", 0, len(paths), offline_s, offline, None, None,
                 sum(not row.ok for row in offline_rows), 1.0))  # fmt: skip
    del predictor

    source = ["--ckpt_path", str(model), "--runtime", "pytorch"] if runtime == "pytorch" else ["--onnx", str(model)]
    server_args = [*source, "--max_batch_size", str(args.max_batch_size),
                   "--batch_timeout", str(args.batch_timeout), *args.server_args.split()]  # fmt: skip
    with Server(*server_args, log=tmp / "server.log", startup_s=180) as server:
        with urllib.request.urlopen(f"{server.url}/info", timeout=10) as response:
            info = json.load(response)
        load(server.port, photos[:64], 4)  # warm-up
        for clients in args.clients:
            seconds, latencies, errors = load(server.port, photos, clients)
            rate = len(photos) / seconds
            rows.append((f"served, {clients} client{'s' * (clients > 1)}", clients, len(photos), seconds, rate,
                         1000 * np.percentile(latencies, 50), 1000 * np.percentile(latencies, 99), errors,
                         rate / offline))  # fmt: skip

    layout = (
        f"{plural(info['workers'], 'worker')} x {plural(info['threads_per_worker'], 'thread')}, "
        f"{plural(info['api_servers'], 'HTTP process')}"
    )
    options = f"--max_batch_size {args.max_batch_size} --batch_timeout {args.batch_timeout} {args.server_args}"
    kind = {"pytorch": "PyTorch", "fp32": "onnxruntime fp32", "int8": "onnxruntime int8"}[runtime]
    section = f"serve, {kind} ({info['backbone']} {info['image_size']} px; {layout}; {options.strip()})"
    for name, _, _, _, rate, p50, p99, errors, share in rows:
        results.add(section, f"{name}: throughput", rate, "images/s")
        if p50 is not None:
            results.add(section, f"{name}: p50 latency", p50, "ms")
            results.add(section, f"{name}: p99 latency", p99, "ms")
            results.add(section, f"{name}: vs offline predict_many", 100 * share, "%")
        results.add(section, f"{name}: errors", errors, f"of {len(paths)}")


if __name__ == "__main__":
    main()
