"""Where the time goes: the data pipeline, the train step, denormals in Adam, inference, and the full `fit` of
configs/cnn.yaml.

    python benchmarks/performance.py                        # everything (~4 min on 2 cores, most of it the 3 fits)
    python benchmarks/performance.py --sections data step   # the quick parts only
    python benchmarks/performance.py --sections step --compile  # with torch.compile's train step beside eager

Sections:
- data: streaming (decode + PIL augment in DataLoader workers) vs the cache's decode-once, then its batched
  per-image augmentation.
- step: a train step of KerasCNN (forward, backward, fused Adam), batch 32, NCHW/NHWC, fp32/bf16 autocast.
- denormals: a one-thread fused Adam step whose second moments are denormal, with denormals flushed (as ``main``
  does with its one ``torch.set_flush_denormal(True)``) or kept, each in a fresh process.
- eval: inference images/s at batch 32, 64 and 256 (validation, test and predict batches), default precision.
- fit: ``python -m catdog_pl fit --config configs/cnn.yaml`` per seed in a fresh process: wall seconds including
  start-up, peak RSS, and the test accuracy of its last.ckpt.
- compile (``--compile``): torch.compile's first (compiling) step and its train step, beside eager.

Rows print as a Markdown table as they are measured and go into ``benchmarks/results/<machine>.csv`` (each
section's earlier rows from this script replaced). With a CUDA GPU, data, step and eval time the GPU, where
``fit`` trains.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, Results, fit_command, last_checkpoint, run_process, test_accuracy  # noqa: E402

from catdog_pl.core.devices import bf16_is_fast, default_precision  # noqa: E402
from catdog_pl.data.cache import decode_all  # noqa: E402
from catdog_pl.data.datamodule import CatDogDataModule  # noqa: E402
from catdog_pl.data.transforms import train_source_size  # noqa: E402
from catdog_pl.models.networks import KerasCNN  # noqa: E402

CONFIG = ROOT / "configs" / "cnn.yaml"
SECTIONS = ("data", "step", "denormals", "eval", "fit")
# Where `fit` would train: the data and step sections time the work there (augmentation and steps on the GPU).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a timer read after it counts that work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def bench_data(results: Results, data_dir: Path) -> None:
    streamed = CatDogDataModule(data_dir=str(data_dir), cache=False)
    streamed.setup("fit")
    start, count = time.perf_counter(), 0
    for images, *_ in streamed.train_dataloader():  # (images, targets, unreadable files)
        count += len(images)
    results.add("data", f"streaming: decode + PIL augment, {streamed.num_workers} worker(s)",
                count / (time.perf_counter() - start), "images/s")  # fmt: skip
    paths = [path for path, _ in streamed.train_set.samples]
    side = train_source_size(streamed.image_size, streamed.hparams.zoom)
    start = time.perf_counter()
    cached, _ = decode_all(paths, side, progress=False)
    results.add("data", f"cache: decode once (draft, a thread per core) to {side} px",
                len(paths) / (time.perf_counter() - start), "images/s")  # fmt: skip
    fast, cached = CatDogDataModule(data_dir=str(data_dir)), cached.to(DEVICE)
    fast.batch_augment(cached[:32])  # warm-up (the GPU's first kernels load lazily)
    synchronize()
    start, count = time.perf_counter(), 0
    for batch in torch.split(cached, 32):
        count += len(fast.batch_augment(batch))
    synchronize()
    results.add("data", f"cache: batched per-image augment (grid_sample, batch 32, {DEVICE.type})",
                count / (time.perf_counter() - start), "images/s")  # fmt: skip


def time_train_steps(
    model: torch.nn.Module,
    net: torch.nn.Module,
    images: torch.Tensor,
    bf16: bool,
    steps: int | None = None,
    fused: bool = False,
) -> tuple[float, float]:
    """Run one step, 10 warm-up steps, then ``steps`` timed ones of ``model`` (``net``'s parameters, Adam):
    the first step's seconds and the timed steps' images/s."""
    steps = steps or (300 if DEVICE.type == "cuda" else 60)  # a GPU step takes ~1 ms: time more of them
    net, images = net.to(DEVICE), images.to(DEVICE)  # keeps images' memory format
    targets = torch.randint(0, 2, (len(images),), device=DEVICE).float()
    optimizer = torch.optim.Adam(net.parameters(), eps=1e-7, fused=fused)
    for step in range(steps + 11):
        if step in (0, 11):
            synchronize()
            start = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 0:
            synchronize()
            first = time.perf_counter() - start
    synchronize()
    return first, steps * len(images) / (time.perf_counter() - start)


def bench_step(results: Results, batch_size: int = 32) -> None:
    for channels_last, bf16 in ((False, False), (True, False), (False, True), (True, True)):
        torch.manual_seed(0)
        net, images = KerasCNN(), torch.rand(batch_size, 3, 64, 64)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        _, rate = time_train_steps(net, net, images, bf16)
        layout = "NHWC" if channels_last else "NCHW"
        name = f"train step, batch {batch_size}, {layout}, {'bf16' if bf16 else 'fp32'}, {DEVICE.type}"
        results.add("step", name, rate, "images/s")


# A fused Adam step over KerasCNN's parameters whose second-moment estimates are denormal (gradients of 1e-21 square
# to 1e-42), in a fresh process that flushes denormals first thing, as the command line's main does, or not (the
# intra-op threads take the mode when they start, so one process cannot time both). One thread: on a shared machine
# a 2-thread step waits whenever the other thread's core is taken (~3 ms or ~55 ms a step on the 2-core VM, whatever
# the mode), which hides the arithmetic this measures.
ADAM_PROBE = """
import sys, time, torch
if sys.argv[1] == "flush":
    torch.set_flush_denormal(True)
torch.set_num_threads(1)
from catdog_pl.models.networks import KerasCNN
params = list(KerasCNN().parameters())
optimizer = torch.optim.Adam(params, eps=1e-7, fused=True)
for p in params:
    p.grad = torch.full_like(p, 1e-21)
for _ in range(20):
    optimizer.step()
start = time.perf_counter()
for _ in range(50):
    optimizer.step()
print((time.perf_counter() - start) / 50)
"""


def bench_denormals(results: Results, repeats: int = 5) -> None:
    if DEVICE.type != "cpu":
        return
    ms: dict[str, list[float]] = {"flush": [], "keep": []}
    for _ in range(repeats):  # in turns, so that a shared machine's load falls on both
        for mode in ms:
            out = subprocess.run([sys.executable, "-c", ADAM_PROBE, mode], capture_output=True, text=True, check=True)
            ms[mode].append(1e3 * float(out.stdout.strip().splitlines()[-1]))
    flush, keep = min(ms["flush"]), min(ms["keep"])  # a shared machine's noise only adds time
    name = f"fused Adam step, KerasCNN, denormal moments, 1 thread, fastest of {repeats}"
    results.add("denormals", f"{name}: flushed (as main does)", flush, "ms")
    results.add("denormals", f"{name}: kept", keep, "ms")
    results.add("denormals", "kept / flushed", keep / flush, "ratio")


def bench_eval(results: Results, batch_sizes: tuple[int, ...] = (32, 64, 256), images: int = 1024) -> None:
    """Inference images/s by batch size (validation, test and predict batches), NHWC, in the default precision."""
    torch.manual_seed(0)
    net = KerasCNN().to(DEVICE, memory_format=torch.channels_last).eval()
    data = torch.rand(images, 3, 64, 64, device=DEVICE).contiguous(memory_format=torch.channels_last)
    bf16 = bf16_is_fast(DEVICE.type)
    with torch.inference_mode(), torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16):
        for batch_size in batch_sizes:
            for chunk in torch.split(data, batch_size):  # warm-up: each shape's kernels are chosen once
                net(chunk)
            synchronize()
            start = time.perf_counter()
            for _ in range(3):
                for chunk in torch.split(data, batch_size):
                    net(chunk)
            synchronize()
            results.add("eval", f"inference, batch {batch_size}, NHWC, {'bf16' if bf16 else 'fp32'}, {DEVICE.type}",
                        3 * images / (time.perf_counter() - start), "images/s")  # fmt: skip


def bench_compile(results: Results, batch_size: int = 32) -> None:
    """Whether torch.compile pays off: its first (compiling) step, then the train step, beside eager mode."""
    images = torch.rand(batch_size, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    bf16 = bf16_is_fast(DEVICE.type)
    for name in ("eager", "torch.compile"):
        torch.manual_seed(0)
        net = KerasCNN().to(memory_format=torch.channels_last)
        model = torch.compile(net) if name == "torch.compile" else net
        first, rate = time_train_steps(model, net, images, bf16, fused=True)
        results.add("compile", f"{name}: first train step, batch {batch_size}, NHWC, {DEVICE.type}", first, "s")
        results.add("compile", f"{name}: train step, batch {batch_size}, NHWC, {DEVICE.type}", rate, "images/s")


def bench_fit(results: Results, data_dir: Path, seeds: list[int]) -> None:
    accs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="fit_") as tmp:
            workdir = Path(tmp)
            run = run_process(fit_command(CONFIG, data_dir, "--seed_everything", str(seed)), workdir)
            acc = test_accuracy(last_checkpoint(workdir), data_dir, workdir)
        accs.append(acc)
        results.add("fit", f"configs/cnn.yaml, seed {seed}: wall incl. start-up", run.seconds, "s")
        results.add("fit", f"configs/cnn.yaml, seed {seed}: peak RSS", run.peak_rss_mb, "MB")
        results.add("fit", f"configs/cnn.yaml, seed {seed}: test acc of last.ckpt", acc)
    results.add("fit", f"test acc of last.ckpt over {len(seeds)} seeds: mean", statistics.mean(accs))
    results.add("fit", f"test acc of last.ckpt over {len(seeds)} seeds: min", min(accs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (~30 s of compiling)")
    args = parser.parse_args()
    # As the command line's main does, before any tensor work: the step figures are those of a `fit` process.
    torch.set_flush_denormal(True)
    data_dir = args.data_dir.resolve()
    results = Results("performance.py")
    results.add("setup", f"precision chosen by default ({DEVICE.type})", default_precision(DEVICE.type))
    if "data" in args.sections:
        bench_data(results, data_dir)
    if "step" in args.sections:
        bench_step(results)
    if "denormals" in args.sections:
        bench_denormals(results)
    if "eval" in args.sections:
        bench_eval(results)
    if args.compile:
        bench_compile(results)
    if "fit" in args.sections:
        bench_fit(results, data_dir, args.seeds)


if __name__ == "__main__":
    main()
