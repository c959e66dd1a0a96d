"""Images per second for labelling the 1000 photos of test_set from disk (decoding included), on each runtime:
the PyTorch module, its onnxruntime fp32 graph and an int8 graph, in one run; their labels and accuracies.

    python benchmarks/predict_speed.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Without --ckpt_path an untrained model of the config's model is used (it costs the same to run; its accuracies mean
nothing and int8 is kept whatever it loses). What it measures, each as the best of ``--rounds`` passes taken in
turn, so that the machine's load falls on all alike:

- ``Predictor.predict_many`` (batch 32) on PyTorch, and on onnxruntime fp32 in several process layouts: one session
  of a thread per core or two sessions of one thread, the next batch decoded by a thread meanwhile or not, idle
  threads spinning or not; int8 in the default layout;
- ``predict`` through Lightning (``--runtime pytorch``) in this process, once;
- labels of fp32 and int8 against PyTorch's, and the accuracy of each on test_set and ood_dev;
- ``python -m catdog_pl predict`` of one photo in a fresh process, on the graph and on PyTorch, and docs/deploying.md's
  onnxruntime example: whole-process time.

Rows print as a Markdown table and go into ``benchmarks/results/<machine>.csv``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, Results, cores, untrained_checkpoint  # noqa: E402

from catdog_pl.cli import main as cli_main  # noqa: E402
from catdog_pl.core.labels import label_of  # noqa: E402
from catdog_pl.data.listing import expand_inputs  # noqa: E402
from catdog_pl.inference.export import quantize_int8  # noqa: E402
from catdog_pl.inference.onnx import OnnxRunner  # noqa: E402
from catdog_pl.inference.predictor import Predictor  # noqa: E402
from catdog_pl.inference.runtime import cached_graph_runner  # noqa: E402
from catdog_pl.inference.writer import PredictionWriter  # noqa: E402

BATCH = 32


def layouts(fp32: Path, int8: Path, n_cores: int) -> dict[str, tuple[Path, int, int, bool, int]]:
    """name -> (graph, threads a session, sessions, spinning, decoding threads)."""
    half = max(1, n_cores // 2)
    return {
        f"onnxruntime fp32, 2 sessions x {half} thread(s), 1 decoding thread": (fp32, half, 2, True, 1),
        f"onnxruntime fp32, 1 session x {n_cores} threads, 1 decoding thread": (fp32, n_cores, 1, True, 1),
        f"onnxruntime fp32, 1 session x {n_cores} threads, no spin, 1 decoding thread": (fp32, n_cores, 1, False, 1),
        f"onnxruntime fp32, 2 sessions x {half} thread(s), decoding between batches": (fp32, half, 2, True, 0),
        f"onnxruntime int8, 2 sessions x {half} thread(s), 1 decoding thread": (int8, half, 2, True, 1),
        f"onnxruntime int8, 1 session x {n_cores} threads, 1 decoding thread": (int8, n_cores, 1, True, 1),
    }


def timed(predictor: Predictor, paths: list[str], workers: int) -> tuple[float, list]:
    start = time.perf_counter()
    rows = predictor.predict_many(paths, batch_size=BATCH, num_workers=workers)
    seconds = time.perf_counter() - start
    assert all(row.ok for row in rows)
    return len(paths) / seconds, rows


def accuracy(rows: list) -> float:
    return float(np.mean([row.label == label_of(Path(row.path).parent.name) for row in rows]))


def one_photo_seconds(model: Path, photo: str, tmp: str, runtime: str, repeats: int) -> float:
    """Median wall time of ``python -m catdog_pl predict`` on one photo in a fresh process (after one untimed run,
    which also exports a checkpoint's graph into its cache)."""
    command = [sys.executable, "-m", "catdog_pl", "predict", "--ckpt_path", str(model), "--runtime", runtime,
               "--data.predict_path", photo, "--prediction.output", f"{tmp}/one.csv", "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=tmp)  # untimed: files in the page cache, graph cached
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=tmp)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def onnx_example_seconds(graph: Path, photo: str, tmp: str, repeats: int) -> float:
    """Median wall time of docs/deploying.md's onnxruntime example (its Python block that imports onnxruntime, on
    ``graph`` and ``photo``) in a fresh process, after one untimed run."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "deploying.md").read_text()
    blocks = [block.split("```", 1)[0] for block in guide.split("```python\n")[1:]]
    code = next(block for block in blocks if "import onnxruntime" in block)
    script = Path(tmp) / "onnx_example.py"
    script.write_text(code.replace('"model.onnx"', repr(str(graph))).replace('"photo.jpg"', repr(photo)))
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, cwd=tmp)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(script)], check=True, capture_output=True, cwd=tmp)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", type=Path)
    parser.add_argument("--config", type=Path, help="without --ckpt_path: an untrained model of this config's model:")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA, help="training_set, test_set, ood_dev")
    parser.add_argument("--rounds", type=int, default=1, help="passes of each layout, in turn; the best counts")
    parser.add_argument("--no_cli", action="store_true", help="skip predict through Lightning in this process")
    args = parser.parse_args()
    results = Results("predict_speed.py")
    paths = expand_inputs(args.data_dir / "test_set")
    ood = expand_inputs(args.data_dir / "ood_dev") if (args.data_dir / "ood_dev").is_dir() else []
    n_cores = cores()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or untrained_checkpoint(Path(tmp) / "untrained.ckpt", args.config)
        torch_predictor = Predictor.from_checkpoint(ckpt, runtime="pytorch")
        name = f"{torch_predictor.hparams['backbone']} {torch_predictor.image_size} px"
        name += f", tta {bool(torch_predictor.hparams.get('tta'))}"
        section = f"predict ({name})" if args.ckpt_path else f"predict (untrained {name})"
        int8 = Path(tmp) / "int8.onnx"
        start = time.perf_counter()
        fp32 = Path(cached_graph_runner(ckpt).path)  # the graph predict and Predictor use, cached beside the checkpoint
        results.add(section, "fp32 graph: exported or found in the cache", time.perf_counter() - start, "s")
        start = time.perf_counter()
        bound = 100.0  # measured here, whatever it loses; export refuses a file past its bound
        figures = quantize_int8(ckpt, int8, args.data_dir, max_accuracy_drop=bound, float_graph=fp32)
        results.add(section, "export int8 graph (calibration on 64 training photos, check on validation)",
                    time.perf_counter() - start, "s")  # fmt: skip
        results.add(section, "int8 check: accuracy lost against fp32 on the validation split",
                    figures["accuracy_drop_points"], "points")  # fmt: skip

        runs = {f"PyTorch ({'bf16' if torch_predictor.bf16 else 'fp32'}), {n_cores} threads, 1 decoding thread":
                (torch_predictor, 1)}  # fmt: skip
        for label, (graph, threads, sessions, spinning, workers) in layouts(fp32, int8, n_cores).items():
            runs[label] = (Predictor.from_onnx(OnnxRunner(graph, threads, sessions, spinning)), workers)
        for predictor, workers in runs.values():
            predictor.predict_many(paths[:64], batch_size=BATCH, num_workers=workers)  # warm-up
        best: dict[str, float] = {}
        rows: dict[str, list] = {}
        for _ in range(args.rounds):
            for label, (predictor, workers) in runs.items():
                rate, rows[label] = timed(predictor, paths, workers)
                best[label] = max(best.get(label, 0.0), rate)
        torch_label = next(iter(runs))
        for label, rate in best.items():
            results.add(section, f"{label}: {len(paths)} test_set photos from disk, batch {BATCH}", rate, "images/s")
            if label != torch_label:
                results.add(section, f"{label}: vs PyTorch", rate / best[torch_label], "x")

        fp32_label = next(label for label in runs if "fp32" in label)
        int8_label = next(label for label in runs if "int8" in label)
        for folder, photos in (("test_set", paths), ("ood_dev", ood)):
            if not photos:
                continue
            on = {label: rows[label] if folder == "test_set" else timed(runs[label][0], photos, 1)[1]
                  for label in (torch_label, fp32_label, int8_label)}  # fmt: skip
            torch_labels = [row.label for row in on[torch_label]]
            for label, kind in ((fp32_label, "fp32"), (int8_label, "int8")):
                same = np.mean([row.label == other for row, other in zip(on[label], torch_labels, strict=True)])
                results.add(section, f"{folder}: {kind} labels equal to PyTorch's", 100 * same, "%")
            for label, kind in ((torch_label, "PyTorch"), (fp32_label, "fp32"), (int8_label, "int8")):
                results.add(section, f"{folder}: accuracy, {kind}", accuracy(on[label]), "")

        if not args.no_cli:
            quiet = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--prediction.show", "0"]
            start = time.perf_counter()
            cli = cli_main(["predict", "--runtime", "pytorch", "--ckpt_path", str(ckpt), "--data.predict_path",
                            str(args.data_dir / "test_set"), "--data.predict_batch_size", str(BATCH),
                            "--prediction.output", f"{tmp}/p.csv", *quiet])  # fmt: skip
            seconds = time.perf_counter() - start
            writer = next(cb for cb in cli.trainer.callbacks if isinstance(cb, PredictionWriter))
            results.add(section, f"CLI predict --runtime pytorch (Lightning) in-process, batch {BATCH}, "
                        f"{cli.datamodule.num_workers} worker(s)", sum(r.ok for r in writer.rows) / seconds,
                        "images/s")  # fmt: skip

        photo = paths[0]
        processes = [("the fp32 graph (.onnx)", fp32, "onnx", 3), ("the int8 graph (.onnx)", int8, "onnx", 3),
                     ("the checkpoint's cached graph", ckpt, "onnx", 3),
                     ("the checkpoint, PyTorch (Lightning)", ckpt, "pytorch", 1)]  # fmt: skip
        for label, model, runtime, repeats in processes:
            seconds = one_photo_seconds(model, photo, tmp, runtime, repeats)
            results.add(section, f"predict of one photo, whole process, {label}, median of {repeats}", seconds, "s")
        seconds = onnx_example_seconds(fp32, photo, tmp, repeats=3)
        measure = "onnxruntime example of docs/deploying.md on one photo, whole process, median of 3"
        results.add(section, measure, seconds, "s")


if __name__ == "__main__":
    main()
