"""Writing CSVs so that a reader never sees half a file and a failed write says which path failed."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from catdog_pl.core.errors import OutputError


def write_csv_atomic(output: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write a CSV through a ``.partial`` file renamed into place; raise :class:`OutputError` naming ``output``
    when the folder cannot be created or written (read-only, full disk), leaving no partial file behind."""
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(partial, output)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise OutputError(f"{output}: cannot write the CSV ({error.strerror or error})") from None
    return output
