"""Writing CSVs and other result files so that a reader never sees half a file and a failed write names its path."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from catdog_pl.core.errors import OutputError


def write_csv_atomic(output: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write a CSV through a ``.partial`` file renamed into place; raise :class:`OutputError` naming ``output``
    when the folder cannot be created or written (read-only, full disk), leaving no partial file behind."""

    def write(handle) -> None:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

    return write_atomic(output, write, "the CSV")


def write_text_atomic(output: str | os.PathLike, text: str) -> Path:
    """:func:`write_csv_atomic` for a text file (JSON, Markdown)."""
    return write_atomic(output, lambda handle: handle.write(text), "the file")


def write_atomic(output: str | os.PathLike, write: Callable, what: str) -> Path:
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", newline="") as handle:
            write(handle)
        os.replace(partial, output)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise OutputError(f"{output}: cannot write {what} ({error.strerror or error})") from None
    return output
