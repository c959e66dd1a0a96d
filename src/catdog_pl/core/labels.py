"""Class names, labels and the decision rule: the one place that turns probabilities into a label.

A model of two classes has one logit (the binary head) and labels class 1 at or above its ``threshold``; a model of
more classes (or of two, asked for ``task="multiclass"``) labels the most probable class. Every consumer (``test``'s
metrics, the CSV, the Python API, the ONNX metadata, ``serve``) decides through :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TASKS = ("binary", "multiclass")


def label_of(class_name: str) -> str:
    """Display label of a class folder: ``cats`` -> ``cat``, ``dogs`` -> ``dog``; ``Cat`` stays ``Cat``. Used once,
    when a model is fitted: its labels are saved in the checkpoint."""
    return class_name[:-1] if class_name.endswith("s") and not class_name.endswith("ss") else class_name


def display_labels(class_names: Sequence[str], labels: Sequence[str] | None = None) -> list[str]:
    """A model's labels: those it saved, else derived from its class names (checkpoints of 0.2 saved none)."""
    return list(labels) if labels else [label_of(name) for name in class_names]


def resolve_task(num_classes: int, task: str | None = None) -> str:
    """``binary`` (one logit, a threshold) for two classes unless ``task`` says ``multiclass``; else ``multiclass``."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    if task == "binary" and num_classes != 2:
        raise ValueError(f"task binary needs exactly 2 classes, got {num_classes}")
    return task or ("binary" if num_classes == 2 else "multiclass")


def decide(probabilities: Any, threshold: float, binary: bool) -> Any:
    """Class indices of a ``(N, C)`` array or tensor of probabilities: class 1 where its probability is at or above
    ``threshold`` (binary), else the most probable class. Same type as the input (numpy or torch), integer."""
    if binary:
        picked = probabilities[:, 1] >= threshold
        return picked.long() if hasattr(picked, "long") else picked.astype("int64")
    return probabilities.argmax(1)


def decide_one(probabilities: Sequence[float], threshold: float, binary: bool) -> int:
    """:func:`decide` for one image's probabilities."""
    if binary:
        return int(probabilities[1] >= threshold)
    return max(range(len(probabilities)), key=lambda i: probabilities[i])


def check_threshold(threshold: float) -> float:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return threshold


@dataclass(frozen=True)
class Classes:
    """A model's classes and how it picks one: folder names, display labels, the task and the threshold."""

    names: tuple[str, ...]
    labels: tuple[str, ...]
    binary: bool
    threshold: float = 0.5

    @classmethod
    def of(cls, hparams: dict, threshold: float | None = None) -> Classes:
        """From a model's hyper-parameters (a checkpoint's, or a module's ``hparams``)."""
        names = tuple(hparams.get("class_names") or ("cats", "dogs"))
        task = resolve_task(len(names), hparams.get("task"))
        return cls(
            names,
            tuple(display_labels(names, hparams.get("labels"))),
            task == "binary",
            check_threshold(float(hparams.get("threshold", 0.5) if threshold is None else threshold)),
        )

    def decide(self, probabilities: Any) -> Any:
        return decide(probabilities, self.threshold, self.binary)

    def label(self, probabilities: Sequence[float]) -> str:
        """The label of one image from its probabilities."""
        return self.labels[decide_one(probabilities, self.threshold, self.binary)]

    def rule(self) -> dict:
        """The decision rule, for a client that only has the probabilities (the ONNX metadata)."""
        if self.binary:
            return {"rule": "threshold", "class": 1, "threshold": self.threshold, "else": 0}
        return {"rule": "argmax"}
