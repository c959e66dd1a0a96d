"""A prediction's rows, the CSV and the terminal table, shared by :class:`~catdog_pl.inference.predictor.Predictor`,
``predict`` on either runtime and its DDP writer (:mod:`~catdog_pl.inference.writer`). No torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from catdog_pl.core.csvfile import write_csv_atomic
from catdog_pl.core.labels import Classes, decide_one


class NamedInputs(Protocol):
    """What the rows are made of: the inputs in order, each with the name its row shows."""

    def __len__(self) -> int: ...

    def name(self, index: int) -> str: ...


#: Above this many classes the CSV keeps the top ``DEFAULT_TOP_K`` classes of each photo instead of a column each.
MAX_CLASS_COLUMNS = 20
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    """One image's answer: ``label``, its ``probability`` and every label's ``probabilities``, or ``error`` when it
    could not be read."""

    path: str
    label: str | None
    probability: float | None
    error: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


def collect(probabilities: dict[int, list[float]], errors: dict[int, str], indices, probs, batch_errors) -> None:
    """Add one batch's results to ``probabilities`` (readable images) and ``errors`` (the rest), by input index;
    ``indices`` and ``probs`` are tensors, arrays or lists."""
    indices = indices.tolist() if hasattr(indices, "tolist") else list(indices)
    probs = probs.tolist() if hasattr(probs, "tolist") else list(probs)
    for index, p, error in zip(indices, probs, batch_errors, strict=True):
        if error:
            errors[index] = error
        else:
            probabilities[index] = p


def make_predictions(
    dataset: NamedInputs, probabilities: dict[int, list[float]], errors: dict[int, str], classes: Classes
) -> list[Prediction]:
    """Rows in input order from per-index probabilities and errors (each index once, however it was sharded)."""
    rows = []
    for index in range(len(dataset)):
        error = errors.get(index, "")
        if error or index not in probabilities:
            rows.append(Prediction(dataset.name(index), None, None, error or "not predicted"))
            continue
        p = probabilities[index]
        picked = decide_one(p, classes.threshold, classes.binary)
        every = dict(zip(classes.labels, p, strict=True))
        rows.append(Prediction(dataset.name(index), classes.labels[picked], p[picked], probabilities=every))
    return rows


def write_csv(
    rows: Sequence[Prediction], output: str | os.PathLike, classes: Classes, top_k: int | None = None
) -> Path:
    """Write ``path,label,probability,p_<label>...,error`` rows to ``output``: a ``p_`` column per class, or with
    ``top_k`` (the default above :data:`MAX_CLASS_COLUMNS` classes) ``top2,p_top2,...`` up to the k-th. Atomic: a
    partial file never replaces a good one; a folder that cannot be written is an error naming ``output``."""
    if top_k is None and len(classes.labels) > MAX_CLASS_COLUMNS:
        top_k = DEFAULT_TOP_K
    if top_k:
        extra = [name for rank in range(2, top_k + 1) for name in (f"top{rank}", f"p_top{rank}")]
    else:
        extra = [f"p_{label}" for label in classes.labels]

    def cells(row: Prediction) -> list[str]:
        if not row.ok:
            return [row.path, "", "", *[""] * len(extra), row.error]
        if top_k:
            ranked = sorted(row.probabilities.items(), key=lambda item: -item[1])[1:top_k]
            ranked += [("", None)] * (top_k - 1 - len(ranked))
            tail = [x for label, p in ranked for x in (label, "" if p is None else f"{p:.6f}")]
        else:
            tail = [f"{row.probabilities[label]:.6f}" for label in classes.labels]
        return [row.path, row.label, f"{row.probability:.6f}", *tail, row.error]

    return write_csv_atomic(output, ("path", "label", "probability", *extra, "error"), (cells(r) for r in rows))


def format_table(rows: Sequence[Prediction], limit: int = 20) -> str:
    """A short terminal table: the first ``limit`` rows, then a count of the rest."""
    width = min(60, max((len(row.path) for row in rows[:limit]), default=4))
    label_width = max([6, *(len(row.label or "") for row in rows[:limit])])
    lines = [f"{'path':<{width}}  {'label':<{label_width}} {'probability':>11}"]
    for row in rows[:limit]:
        path = row.path if len(row.path) <= width else "..." + row.path[-(width - 3) :]
        if row.ok:
            lines.append(f"{path:<{width}}  {row.label:<{label_width}} {row.probability:11.3f}")
        else:
            lines.append(f"{path:<{width}}  error: {row.error}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more rows in the CSV")
    return "\n".join(lines)


def summary(rows: Sequence[Prediction], show: int, classes: Classes, path: str | os.PathLike | None) -> str:
    """``predict``'s terminal report: a short table, then one line with the counts, the rule and the CSV's path."""
    failed = sum(not row.ok for row in rows)
    rule = f"threshold {classes.threshold:g}" if classes.binary else "most probable class"
    return (
        f"{format_table(rows, show)}\n{len(rows)} images: "
        f"{len(rows) - failed} predicted, {failed} failed ({rule}) -> {path}"
    )
