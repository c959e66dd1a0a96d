"""Where the time goes, in one table: data pipeline, train and inference steps, the full `fit` of configs/cnn.yaml,
plain PyTorch, and what Lightning adds.

    python benchmarks/performance.py                      # everything: 3 seeds of the full fit, 4 runs of each loop
                                                          # in the overhead section (8-10 min on 2 cores)
    python benchmarks/performance.py --sections data step # the quick parts only
    python benchmarks/performance.py --sections overhead  # Lightning against the plain loop, three ways (~5 min)

Figures are this machine's; the table's first line names it. With a CUDA GPU, the data, step and eval sections
time the GPU, where `fit` trains.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catdog_pl.process import prepare_process  # noqa: E402
from common import ROOT, SHARED_DATA, machine, table, table_rows  # noqa: E402

from catdog_pl.cache import decode_all  # noqa: E402
from catdog_pl.cli import bf16_is_fast, default_precision, main  # noqa: E402
from catdog_pl.data import CatDogDataModule  # noqa: E402
from catdog_pl.folders import TEST_DIR, TRAIN_DIR, SafeImageFolder  # noqa: E402
from catdog_pl.model import SeedCNN  # noqa: E402
from catdog_pl.module import CatDogClassifier  # noqa: E402

CONFIG = ROOT / "configs" / "cnn.yaml"
# Where `fit` would train: the data and step sections time the work there (augmentation and steps on the GPU).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a timer read after it counts that work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def images_per_s(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} images/s"


def bench_data(data_dir: Path) -> list[tuple[str, str]]:
    rows, threads = [], torch.get_num_threads()
    streamed = CatDogDataModule(data_dir=str(data_dir), cache=False)
    streamed.setup("fit")
    loader = streamed.train_dataloader()
    start, count = time.perf_counter(), 0
    for images, *_ in loader:  # (images, targets, unreadable files)
        count += len(images)
    rows.append(
        (
            f"streaming: decode + PIL augment, {streamed.num_workers} worker(s)",
            images_per_s(count, time.perf_counter() - start),
        )
    )
    torch.set_num_threads(threads)  # streaming setup leaves cores to its workers; the rest runs in-process
    paths = [path for path, _ in streamed.train_set.samples]
    start = time.perf_counter()
    cached, _ = decode_all(paths, 80)
    rows.append(
        ("fast path: decode once (draft, threads) to 80 px", images_per_s(len(paths), time.perf_counter() - start))
    )
    fast, cached = CatDogDataModule(data_dir=str(data_dir)), cached.to(DEVICE)
    fast.batch_augment(cached[:32])  # warm-up (the GPU's first kernels load lazily)
    synchronize()
    start, count = time.perf_counter(), 0
    for batch in torch.split(cached, 32):
        count += len(fast.batch_augment(batch))
    synchronize()
    rows.append(
        (
            f"fast path: batched per-image augment (grid_sample, batch 32, {DEVICE.type})",
            images_per_s(count, time.perf_counter() - start),
        )
    )
    return rows


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


def bench_step(batch_size: int = 32) -> list[tuple[str, str]]:
    rows = []
    for channels_last, bf16 in ((False, False), (True, False), (True, True)):
        torch.manual_seed(0)
        net, images = SeedCNN(), torch.rand(batch_size, 3, 64, 64)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        _, rate = time_train_steps(net, net, images, bf16)
        layout = "NHWC" if channels_last else "NCHW"
        name = f"train step, batch {batch_size}, {layout}, {'bf16' if bf16 else 'fp32'}, {DEVICE.type}"
        rows.append((name, f"{rate:,.0f} images/s"))
    return rows


# A fused Adam step over SeedCNN's parameters whose second-moment estimates are denormal (gradients of 1e-21 square
# to 1e-42), in a fresh process that flushes denormals as the command line does, or not: the threads take the mode
# when they start, so one process cannot time both.
ADAM_PROBE = """
import sys, time, torch
from catdog_pl.model import SeedCNN
from catdog_pl.process import flush_denormals
if sys.argv[1] == "flush":
    flush_denormals()
params = list(SeedCNN().parameters())
optimizer = torch.optim.Adam(params, eps=1e-7, fused=True)
for p in params:
    p.grad = torch.full_like(p, 1e-21)
for _ in range(20):
    optimizer.step()
start = time.perf_counter()
for _ in range(100):
    optimizer.step()
print((time.perf_counter() - start) / 100)
"""


def bench_denormals() -> list[tuple[str, str]]:
    if DEVICE.type != "cpu":
        return []
    ms = {}
    for mode in ("flush", "keep"):
        out = subprocess.run([sys.executable, "-c", ADAM_PROBE, mode], capture_output=True, text=True, check=True)
        ms[mode] = 1e3 * float(out.stdout.strip().splitlines()[-1])
    return [("fused Adam step, denormal moment estimates: denormals flushed (as fit does) / kept",
             f"{ms['flush']:.2f} ms / {ms['keep']:.2f} ms")]  # fmt: skip


def bench_eval(batch_sizes: tuple[int, ...] = (32, 64, 256), images: int = 1024) -> list[tuple[str, str]]:
    """Inference images/s by batch size (validation, test and predict batches), NHWC, in the default precision."""
    torch.manual_seed(0)
    net = SeedCNN().to(DEVICE, memory_format=torch.channels_last).eval()
    data = torch.rand(images, 3, 64, 64, device=DEVICE).contiguous(memory_format=torch.channels_last)
    bf16 = bf16_is_fast()
    rates = []
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
            rates.append(f"{3 * images / (time.perf_counter() - start):,.0f}")
    sizes = " / ".join(map(str, batch_sizes))
    return [(f"inference, batch {sizes}, NHWC, {DEVICE.type}", f"{' / '.join(rates)} images/s")]


def bench_compile(batch_size: int = 32) -> list[tuple[str, str]]:
    """Whether torch.compile pays off: its first (compiling) step, then the train step, beside eager mode."""
    rows = []
    images = torch.rand(batch_size, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    bf16 = bf16_is_fast()
    for name in ("eager", "torch.compile"):
        torch.manual_seed(0)
        net = SeedCNN().to(memory_format=torch.channels_last)
        model = torch.compile(net) if name == "torch.compile" else net
        first, rate = time_train_steps(model, net, images, bf16, fused=True)
        rows.append((f"train step, batch {batch_size}, NHWC, {name}: first step, then",
                     f"{first:.1f} s, then {rate:,.0f} images/s"))  # fmt: skip
    return rows


def run_fit(data_dir: Path, seed: int, workdir: Path) -> tuple[float, float, float]:
    """One `fit` as a user runs it, in a subprocess: wall seconds, peak RSS in MB, test/acc of last.ckpt."""
    command = [
        sys.executable,
        "-m",
        "catdog_pl",
        "fit",
        "--config",
        str(CONFIG),
        "--data.data_dir",
        str(data_dir),
        "--seed_everything",
        str(seed),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"fit failed:\n{stderr[-2000:]}")
    last = max(workdir.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--verbose", "false"]
    cli = main(["test", "--config", str(CONFIG), "--data.data_dir", str(data_dir), "--ckpt_path", str(last), *quiet])
    return seconds, usage.ru_maxrss / 1024, float(cli.trainer.callback_metrics["test/acc"])


def bench_fit(data_dir: Path, seeds: list[int]) -> list[tuple[str, str]]:
    rows, accs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            seconds, rss, acc = run_fit(data_dir, seed, Path(tmp))
            accs.append(acc)
            rows.append(
                (
                    f"fit configs/cnn.yaml, seed {seed}: wall incl. start-up, peak RSS, test acc of last.ckpt",
                    f"{seconds:.1f} s, {rss:,.0f} MB, {acc:.3f}",
                )
            )
    rows.append(
        (f"test acc of last.ckpt over {len(seeds)} seeds: mean (min)", f"{sum(accs) / len(accs):.3f} ({min(accs):.3f})")
    )
    return rows


def bench_pictures(data_dir: Path, epochs: int = 25) -> list[tuple[str, str]]:
    """Share of a fit spent drawing and writing RunVisualizer's pictures, timed inside its own hooks."""
    from catdog_pl.visualize import RunVisualizer

    spent = [0.0]

    def timed(method):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return wrapper

    hooks = [name for name in vars(RunVisualizer) if name.startswith("on_")]
    originals = {name: getattr(RunVisualizer, name) for name in hooks}
    for name in hooks:
        setattr(RunVisualizer, name, timed(originals[name]))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            main(["fit", "--config", str(CONFIG), "--data.data_dir", str(data_dir), "--trainer.max_epochs", str(epochs),
                  "--trainer.logger.init_args.save_dir", tmp, "--trainer.enable_progress_bar", "false"])  # fmt: skip
            total = time.perf_counter() - start
    finally:
        for name, method in originals.items():
            setattr(RunVisualizer, name, method)
    return [(f"RunVisualizer's pictures during a {epochs}-epoch fit", f"{spent[0]:.2f} s of {total:.1f} s "
             f"({100 * spent[0] / total:.1f} %)")]  # fmt: skip


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each run (what it returns), ``repeats`` times, in turns whose order flips every time
    (A B, B A, A B, ...). On the 2-core VM the order alone moved Lightning's measured cost by about half of it."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for name in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
            times[name].append(runs[name]())
    return times


def timed(function: Callable[[], object]) -> Callable[[], float]:
    """``function`` as a run for :func:`alternate`: its wall seconds."""

    def run() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    return run


def bare_trainer(epochs: int, callbacks: list[L.Callback] | None = None, **overrides: object) -> L.Trainer:
    """Lightning's Trainer as the overhead rows time it: no logger, checkpoints, progress bar or sanity check, as
    the plain loop has none; ``overrides`` are further Trainer arguments."""
    settings = dict(max_epochs=epochs, precision=default_precision(), logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    callbacks=callbacks)  # fmt: skip
    return L.Trainer(**{**settings, **overrides})


def time_loop(loop: str, data_dir: Path, epochs: int = 25) -> float:
    """Seconds of ``epochs`` epochs in this process, set-up and decoding included: Lightning's Trainer or the plain
    PyTorch loop."""
    from plain_pytorch import run as plain_run

    start = time.perf_counter()
    if loop == "plain":
        plain_run(str(data_dir), epochs=epochs)
    else:
        L.seed_everything(42, verbose=False)
        bare_trainer(epochs).fit(CatDogClassifier(), CatDogDataModule(data_dir=str(data_dir)))
    return time.perf_counter() - start


def bench_interleaved(data_dir: Path, epochs: int = 25) -> list[tuple[str, str]]:
    """Lightning's epochs and the plain loop's in turn, in one process: at the start of each Trainer epoch a
    callback runs one epoch of the plain loop (its own network and optimizer, the same data module's cached
    batches and augmentation). Each Trainer epoch is timed from the end of that plain epoch to the start of the next
    one, hooks, validation and epoch-end work included. Paired a second apart, the two loops see the same machine:
    a whole run's time drifts with a shared machine's load, an epoch's ratio far less than the ratio of two runs
    made minutes apart. The first epoch of each (warm-up) is left out."""
    from plain_pytorch import PlainLoop

    class PlainEpochs(L.Callback):
        def __init__(self) -> None:
            self.plain: list[float] = []
            self.lightning: list[float] = []
            self.mark: float | None = None
            self.loop: PlainLoop | None = None

        def lap(self) -> None:
            if self.mark is not None:
                self.lightning.append(time.perf_counter() - self.mark)

        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.lap()
            if self.loop is None:
                self.loop = PlainLoop(trainer.strategy.root_device, trainer.precision == "bf16-mixed")
            start = time.perf_counter()
            with torch.enable_grad():
                self.loop.epoch(trainer.datamodule)
            synchronize()
            self.plain.append(time.perf_counter() - start)
            self.mark = time.perf_counter()

        def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            synchronize()
            self.lap()

    L.seed_everything(42, verbose=False)
    timer = PlainEpochs()
    bare_trainer(epochs, [timer]).fit(CatDogClassifier(), CatDogDataModule(data_dir=str(data_dir)))
    lightning_s, plain_s = timer.lightning[1:], timer.plain[1:]
    ratios = sorted(a / b for a, b in zip(lightning_s, plain_s, strict=True))
    quartiles = statistics.quantiles(ratios, n=4)
    return [(f"epochs 2-{epochs} in turn in one process, a plain epoch before each Trainer epoch",
             f"Lightning {sum(lightning_s):.1f} s vs plain {sum(plain_s):.1f} s (Lightning "
             f"{100 * (sum(lightning_s) / sum(plain_s) - 1):+.1f} %; the epochs' ratios: median "
             f"{100 * (statistics.median(ratios) - 1):+.1f} %, quartiles {100 * (quartiles[0] - 1):+.1f} % and "
             f"{100 * (quartiles[2] - 1):+.1f} %)")]  # fmt: skip


def bench_overhead(data_dir: Path, epochs: int = 25, repeats: int = 4) -> list[tuple[str, str]]:
    """The same epochs through Lightning's Trainer and through the plain PyTorch loop, each run in a fresh process
    (as either is started by a user; whole runs one after another in one process got faster the later they ran,
    and the order decided who gained) and timed inside it, after the imports. Each loop runs ``repeats`` times (see
    :func:`alternate`); the table gives the fastest of each, since a shared machine's noise only ever adds time,
    and the median of the ratios of the runs made side by side. Then the Trainer's own cost a batch
    (:func:`null_overhead`), summed over this run's batches."""

    def fresh(loop: str) -> Callable[[], float]:
        def run() -> float:
            command = [sys.executable, __file__, "--time_loop", loop, "--data_dir", str(data_dir)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            return float(out.strip().splitlines()[-1])

        return run

    times = alternate({"lightning": fresh("lightning"), "plain": fresh("plain")}, repeats)
    lightning_s, plain_s = times["lightning"], times["plain"]
    best_l, best_p = min(lightning_s), min(plain_s)
    ratio = statistics.median(a / b for a, b in zip(lightning_s, plain_s, strict=True))
    runs = (
        f"runs: Lightning {', '.join(f'{t:.1f}' for t in lightning_s)}; plain {', '.join(f'{t:.1f}' for t in plain_s)}"
    )
    train, val = (len(SafeImageFolder(str(data_dir / split))) for split in (TRAIN_DIR, TEST_DIR))
    null = null_overhead(epochs, repeats, train, val)
    return [
        (f"{epochs} epochs, a fresh process each, fastest of {repeats}: Lightning Trainer vs plain PyTorch loop",
         f"{best_l:.1f} s vs {best_p:.1f} s (Lightning {100 * (best_l / best_p - 1):+.1f} %; median of the "
         f"side-by-side ratios {100 * (ratio - 1):+.1f} %; {runs})"),
        (f"Lightning's own cost: no-op model, fastest of {repeats}",
         f"{null['train_ms']:.2f} ms a training batch, {null['val_ms']:.2f} ms a validation batch; over the "
         f"{null['train_batches']:,} + {null['val_batches']:,} batches of the run above {null['seconds']:.2f} s, "
         f"{100 * null['seconds'] / best_p:.1f} % of the plain loop's {best_p:.1f} s"),
    ]  # fmt: skip


def null_overhead(epochs: int = 25, repeats: int = 4, train: int = 2000, val: int = 1000) -> dict[str, float]:
    """Lightning's own cost per batch, without the noise of real work: a one-parameter model on the CPU, the
    batches of the real run (``train`` and ``val`` images, batch 32, the cache's loader), a fused Adam step and
    the default precision's autocast in both, through ``Trainer.fit`` and through a bare loop. Fastest of
    ``repeats`` each (see :func:`alternate`), for the training batches alone and for the whole epochs; the
    validation batches' cost is the difference. Returns milliseconds a training and a validation batch, the
    batches' counts, and the seconds the Trainer adds to all of them."""
    from torch.utils.data import DataLoader

    from catdog_pl.cache import CachedImages, passthrough_collate

    def loader(n: int, shuffle: bool) -> DataLoader | None:
        dataset = CachedImages(torch.zeros(n, 1, dtype=torch.uint8), torch.zeros(n))
        return DataLoader(dataset, batch_size=32, shuffle=shuffle, collate_fn=passthrough_collate) if n else None

    precision = default_precision("cpu")
    bf16 = precision == "bf16-mixed"

    class NullModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
            return (self.w * batch[0].float().mean()).sum()

        def validation_step(self, batch: tuple, batch_idx: int) -> None:
            (self.w * batch[0].float().mean()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), fused=True)

    def plain(val: int) -> None:
        w = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.Adam([w], fused=True)
        train_loader, val_loader = loader(train, True), loader(val, False)
        for _ in range(epochs):
            for images, _targets in train_loader:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = (w * images.float().mean()).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            with torch.inference_mode():
                for images, _targets in val_loader or []:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        (w * images.float().mean()).sum()

    def lightning(val: int) -> None:
        trainer = bare_trainer(epochs, accelerator="cpu", devices=1, precision=precision)
        trainer.fit(NullModule(), loader(train, True), loader(val, False))

    def cost(val: int) -> float:
        """Seconds the Trainer adds to ``epochs`` epochs of ``train`` and ``val`` images."""
        times = alternate({"lightning": timed(lambda: lightning(val)), "plain": timed(lambda: plain(val))}, repeats)
        return min(times["lightning"]) - min(times["plain"])

    train_batches, val_batches = epochs * math.ceil(train / 32), epochs * math.ceil(val / 32)
    train_only, both = cost(0), cost(val)
    return {"train_ms": 1e3 * train_only / train_batches, "val_ms": 1e3 * (both - train_only) / val_batches,
            "train_batches": train_batches, "val_batches": val_batches, "seconds": both}  # fmt: skip


def bench_plain(data_dir: Path) -> list[tuple[str, str]]:
    command = [sys.executable, str(ROOT / "benchmarks" / "plain_pytorch.py"), "--data_dir", str(data_dir)]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return [
        (
            "plain PyTorch loop, same pipeline, 25 epochs (wall incl. start-up)",
            f"{time.perf_counter() - start:.1f} s; {out}",
        )
    ]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["data", "step", "eval", "fit", "plain", "overhead", "pictures"],
        choices=["data", "step", "eval", "fit", "plain", "overhead", "pictures"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--repeats", type=int, default=4, help="runs of each loop in the overhead section")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (~30 s of compiling)")
    parser.add_argument("--time_loop", choices=["lightning", "plain"], help=argparse.SUPPRESS)  # one overhead run
    args = parser.parse_args()
    prepare_process()  # as the command line does: the step figures are those of a `fit` process
    if args.time_loop:
        print(time_loop(args.time_loop, args.data_dir.resolve()))
        return
    data_dir = args.data_dir.resolve()
    sections: list[Callable[[], list[tuple[str, str]]]] = [
        lambda: [("machine", machine()), ("precision chosen by default", default_precision())]
    ]
    if "data" in args.sections:
        sections.append(lambda: bench_data(data_dir))
    if "step" in args.sections:
        sections += [bench_step, bench_denormals]
    if "eval" in args.sections:
        sections.append(bench_eval)
    if args.compile:
        sections.append(bench_compile)
    if "fit" in args.sections:
        sections.append(lambda: bench_fit(data_dir, args.seeds))
    if "plain" in args.sections:
        sections.append(lambda: bench_plain(data_dir))
    if "overhead" in args.sections:
        sections += [lambda: bench_interleaved(data_dir), lambda: bench_overhead(data_dir, repeats=args.repeats)]
    if "pictures" in args.sections:
        sections.append(lambda: bench_pictures(data_dir))
    # Each row as soon as it is measured, so that a run stopped by a time limit keeps what it measured.
    for index, section in enumerate(sections):
        rows = section()
        print(table(rows) if index == 0 else "\n".join(table_rows(rows)), flush=True)


if __name__ == "__main__":
    main_bench()
