"""Helpers shared by the benchmark scripts: the machine's name and id, the per-machine results CSV, and a fit timed
in a fresh process."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from catdog_pl.compat.torch import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "cats_vs_dogs"
RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = ("script", "section", "measure", "value", "unit", "command", "date", "machine")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> str:
    """One line naming this machine: CPU model, its bf16 ability and cores, GPU if any, torch version."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    isa = "AVX-512 BF16" if cpu_has_native_bf16() else "no native bf16"
    return f"{cpu_name()} ({isa}), {cores()} cores, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def slug(text: str, words: int = 3) -> str:
    text = re.sub(r"\((R|TM|C)\)|\bCPU\b|\bProcessor\b|@.*$|\b\d+-Core\b", " ", text, flags=re.I)
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words]) or "unknown"


def machine_id() -> str:
    """A short stable id naming the results file: ``cpu-2core-amd-epyc``, ``cpu-2core-amd-epyc-bf16``,
    ``gpu-nvidia-h200``. A CPU with native bf16 is its own machine: the CLI trains in bf16 there and in fp32
    elsewhere, where the same fit can take twice as long."""
    if torch.cuda.is_available():
        return f"gpu-{slug(torch.cuda.get_device_name(0))}"
    return f"cpu-{cores()}core-{slug(cpu_name(), 2)}" + ("-bf16" if cpu_has_native_bf16() else "")


def results_path() -> Path:
    return RESULTS / f"{machine_id()}.csv"


def read_results(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Results:
    """Rows of one script's run: each printed as a Markdown table row when measured and written at once into the
    machine's CSV (``benchmarks/results/<machine_id>.csv``), so that a run stopped midway keeps what it measured.

    The first row of a section replaces that script's earlier rows of that section; other rows stay.
    """

    def __init__(self, script: str, command: list[str] | None = None, path: Path | None = None) -> None:
        self.script = script
        self.command = shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if command is None else command)])
        self.path = path or results_path()
        self.date = datetime.date.today().isoformat()
        self.sections: set[str] = set()
        self.header_printed = False

    def add(self, section: str, measure: str, value: float | int | str, unit: str = "") -> None:
        if not self.header_printed:
            print(f"machine: {machine()} (results: {self.path.relative_to(ROOT)})\n")
            print("| section | measure | value | unit |\n| --- | --- | --- | --- |", flush=True)
            self.header_printed = True
        text = format_value(value)
        print(f"| {section} | {measure} | {text} | {unit} |", flush=True)
        first = section not in self.sections
        self.sections.add(section)

        def replaced(row: dict[str, str]) -> bool:  # this script's earlier rows of the section, or this row's
            return row["script"] == self.script and row["section"] == section and (first or row["measure"] == measure)

        rows = [row for row in read_results(self.path) if not replaced(row)]
        values = (self.script, section, measure, text, unit, self.command, self.date, machine())
        rows.append(dict(zip(COLUMNS, values, strict=True)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def format_value(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


@dataclass
class Run:
    """A finished command in a fresh process: wall seconds (start-up included), its peak RSS in MB, its output, and
    the CPU seconds (user + system) of it and the processes it waited for: on a shared, busy machine the CPU time
    of two runs compares more fairly than their walls."""

    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0


def run_process(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` in ``cwd``, timed from fork to exit, its peak RSS from ``wait4``; raises with the end of
    stderr if it fails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, usage.ru_maxrss / 1024, stdout, stderr, cpu)  # ru_maxrss is in KB on Linux


TEST_ACC = re.compile(r"test/acc\W+([0-9]*\.[0-9]+)")  # Lightning's test table, old and new command lines alike


def fit_command(config: Path, data_dir: Path, *extra: str) -> list[str]:
    """``fit`` as a user runs it (no progress bar: the runs' output goes to a file)."""
    return [sys.executable, "-m", "catdog_pl", "fit", "--config", str(config), "--data.data_dir", str(data_dir),
            "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip


def last_checkpoint(workdir: Path) -> Path:
    return max(workdir.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=os.path.getmtime)


def test_accuracy(ckpt: Path, data_dir: Path, workdir: Path, env: dict[str, str] | None = None) -> float:
    """test/acc of ``ckpt`` on ``data_dir``'s test_set, by ``python -m catdog_pl test`` in a fresh process."""
    command = [sys.executable, "-m", "catdog_pl", "test", "--ckpt_path", str(ckpt), "--data.data_dir", str(data_dir),
               "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    out = run_process(command, workdir, env)
    match = TEST_ACC.search(out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"no test/acc in the output of {shlex.join(command)}:\n{out.stdout[-2000:]}")
    return float(match.group(1))


def untrained_checkpoint(path: Path, config: Path | None = None) -> Path:
    """A checkpoint of an untrained ``CatDogModule`` (keras_cnn, or the ``model:`` of a ``configs/*.yaml``): it
    costs the same to run as a trained one."""
    import lightning
    import yaml

    from catdog_pl.training.module import CatDogModule

    model_args = yaml.safe_load(config.read_text())["model"] if config else {}
    model_args.update(weights=None, pretrained=False)  # random weights: no download, no [lite0] extra
    model = CatDogModule(**model_args)
    state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    torch.save({**state, "pytorch-lightning_version": lightning.__version__}, path)
    return path
