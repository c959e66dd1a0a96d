"""Hostile uploads against ``python -m catdog_pl serve`` with its default limits, beside well-behaved clients.

    python benchmarks/serve_abuse.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

The server runs with its defaults (``--max_pixels`` 25,000,000, ``--max_upload_mb`` 20, ``--max_concurrent`` 64,
``--max_decodes`` 2, a worker and an HTTP process per core up to 4) in a subprocess on a free 127.0.0.1 port.
First 16 clients post every ``test_set`` photo once, alone (the baseline); then again while ``--bad_clients``
threads send, over and over until the good clients are done, each hostile kind of ``tests/abuse.py``: the
9,000 x 9,000 half-transparent RGBA PNG (334 KB, 324 MB decoded), a JPEG header claiming 100 megapixels, an EPS, a
PSD, a body one byte over the upload limit, and truncated JPEG and PNG files, as raw bodies and as multipart
uploads (``--near_limit`` adds the costliest image the limits let through: an RGBA PNG just under
``--max_pixels``, answered 200). Every good answer must carry the label ``Predictor.predict_many`` gives that
photo, every bad one its 4xx.

Reported: the server's resident memory (all its processes: main, HTTP processes, inference workers) at rest and
its peak under attack (sampled every 50 ms), which HTTP processes map PyTorch, the good clients' p50 and p99
latency alone and under attack, wrong answers of each kind, and ``/health`` after. Rows go to
``benchmarks/results/<machine>.csv`` (section ``serve abuse``). Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, Results, untrained_checkpoint  # noqa: E402

sys.path.insert(0, str(ROOT))  # the serve tests' Server and hostile files
from catdog_pl.data.inputs import expand_inputs  # noqa: E402
from catdog_pl.inference.predictor import Predictor  # noqa: E402
from tests import abuse  # noqa: E402
from tests.serving import Server, get  # noqa: E402

MB = 1024 * 1024


def process_kinds(server: Server) -> dict[str, list[int]]:
    """The server's processes by kind: ``http`` (the main process, LitServe's manager and the HTTP processes, all
    forked from the main one) and ``worker`` (the spawned inference workers)."""
    kinds: dict[str, list[int]] = {"http": [], "worker": [], "other": []}
    for pid in server.pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        kind = "http" if "catdog_pl serve" in command else "worker" if "spawn_main" in command else "other"
        kinds[kind].append(pid)
    return kinds


def maps_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", type=Path, help="default: an untrained configs/cnn.yaml model")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA / "test_set")
    parser.add_argument("--good_clients", type=int, default=16)
    parser.add_argument("--bad_clients", type=int, default=4)
    parser.add_argument("--server_args", default="", help="more serve options, e.g. '--max_decodes 1'")
    parser.add_argument(
        "--near_limit",
        action="store_true",
        help="add a half-transparent RGBA PNG just under --max_pixels (accepted: 200), the costliest decode allowed",
    )
    args = parser.parse_args()
    paths = expand_inputs(args.data_dir)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or untrained_checkpoint(Path(tmp) / "untrained.ckpt", None)
        expected = {row.path: row.label for row in Predictor.from_checkpoint(ckpt).predict_many(paths)}
        good = [(Path(path).name, Path(path).read_bytes(), expected[path]) for path in paths]
        with Server("--ckpt_path", str(ckpt), *args.server_args.split(), log=Path(tmp) / "server.log",
                    startup_s=300) as server:  # fmt: skip
            with urllib.request.urlopen(f"{server.url}/info", timeout=10) as response:
                info = json.load(response)
            bad = abuse.bad_uploads(info["max_upload_bytes"], big_side=9000, header_side=10_000)
            if args.near_limit:
                width = 5000
                bad.append(abuse.Bad("near-limit.png", abuse.rgba_png(width, info["max_pixels"] // width), 200))
            sizes = {item.name: len(item.data) for item in bad}
            time.sleep(3)  # settled
            kinds = process_kinds(server)
            rest = server.rss_bytes()
            rest_total = sum(rest.values())
            rest_http = sum(rest.get(pid, 0) for pid in kinds["http"])
            rest_worker = sum(rest.get(pid, 0) for pid in kinds["worker"])
            torch_in_http = [pid for pid in kinds["http"] if maps_torch(pid)]

            def total() -> int:
                return sum(server.rss_bytes().values())

            baseline = abuse.attack(server.url, good, [], good_clients=args.good_clients, bad_clients=0,
                                    rounds=1, rss=total)  # fmt: skip
            after_baseline = total()
            attacked = abuse.attack(server.url, good, bad, good_clients=args.good_clients,
                                    bad_clients=args.bad_clients, rounds=1, bad_rounds=1, until_good_done=True,
                                    rss=total)  # fmt: skip
            health, _ = get(f"{server.url}/health")
            after = total()
        log = (Path(tmp) / "server.log").read_text()

    results = Results("serve_abuse.py")
    limits = (f"max_pixels {info['max_pixels']:,}, max_upload {info['max_upload_bytes'] // MB} MB, "
              f"max_concurrent {info['max_concurrent']}, max_decodes {info['max_decodes']}")  # fmt: skip
    layout = f"{info['workers']} workers x {info['threads_per_worker']} threads, {info['api_servers']} HTTP processes"
    near = ", with a near-limit PNG" if args.near_limit else ""
    section = f"serve abuse{near} ({info['backbone']} {info['image_size']} px; {layout}; {limits})"
    results.add(section, "resting RSS, all processes", rest_total / MB, "MB")
    results.add(section, f"resting RSS, main + manager + HTTP ({len(kinds['http'])} processes)", rest_http / MB, "MB")
    results.add(section, f"resting RSS, inference workers ({len(kinds['worker'])})", rest_worker / MB, "MB")
    results.add(section, "HTTP-side processes mapping libtorch", len(torch_in_http), f"of {len(kinds['http'])}")
    results.add(section, "good clients alone: p50 latency", 1000 * np.percentile(baseline.good_latencies, 50), "ms")
    results.add(section, "good clients alone: p99 latency", baseline.p99_ms(), "ms")
    results.add(section, "good clients alone: peak RSS", baseline.peak_rss / MB, "MB")
    good_sent, bad_sent = len(attacked.good_latencies), sum(attacked.bad_counts.values())
    results.add(section, "under attack: good requests", good_sent, f"from {args.good_clients} clients")
    results.add(section, "under attack: bad requests", bad_sent, f"from {args.bad_clients} clients")
    for item in bad:
        results.add(section, f"under attack: {item.name} ({sizes[item.name]:,} bytes, expects {item.status})",
                    attacked.bad_counts.get(item.name, 0), "sent")  # fmt: skip
    results.add(section, "under attack: good p50 latency", 1000 * np.percentile(attacked.good_latencies, 50), "ms")
    results.add(section, "under attack: good p99 latency", attacked.p99_ms(), "ms")
    results.add(section, "under attack: peak RSS, all processes", attacked.peak_rss / MB, "MB")
    results.add(section, "under attack: peak growth over rest", (attacked.peak_rss - rest_total) / MB, "MB")
    results.add(section, "under attack: wrong good answers", len(attacked.good_wrong), "")
    results.add(section, "under attack: wrong bad answers", len(attacked.bad_wrong), "")
    results.add(section, "after: /health", health, "")
    results.add(section, "after: RSS, all processes", after / MB, "MB")
    for line in (baseline.good_wrong + attacked.good_wrong + attacked.bad_wrong)[:20]:
        print("wrong:", line)
    checks = {
        "every good answer right": not baseline.good_wrong and not attacked.good_wrong,
        "every bad request its 4xx": not attacked.bad_wrong,
        "peak growth <= 1 GB": attacked.peak_rss - rest_total <= 1024 * MB,
        "/health 200 after": health == 200,
        "no torch in the HTTP processes": not torch_in_http,
        "no traceback in the server log": "Traceback" not in log,
    }
    for name, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
        ok &= passed
    print(f"after the baseline: {after_baseline / MB:.0f} MB")
    if not ok:
        print(log[-3000:])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
