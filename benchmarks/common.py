"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "cats_vs_dogs"


def machine() -> str:
    """One line naming this machine: CPU model and cores, GPU if any, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def table(rows: list[tuple[str, str]], header: tuple[str, str] = ("measure", "value")) -> str:
    """A two-column Markdown table."""
    return "\n".join([f"| {header[0]} | {header[1]} |", "| --- | --- |", *table_rows(rows)])


def table_rows(rows: list[tuple[str, str]]) -> list[str]:
    """The lines of :func:`table`'s rows, to print more of a table already begun."""
    return [f"| {name} | {value} |" for name, value in rows]
