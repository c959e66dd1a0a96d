"""Class names, labels and thresholds: the one place that turns a probability into a label."""

from __future__ import annotations

from collections.abc import Sequence


def label_of(class_name: str) -> str:
    """Display label of a class folder: ``cats`` -> ``cat``, ``dogs`` -> ``dog``; ``Cat`` stays ``Cat``."""
    return class_name[:-1] if class_name.endswith("s") and not class_name.endswith("ss") else class_name


def label_for(probability: float, class_names: Sequence[str], threshold: float) -> str:
    """The label of an image whose class-1 probability is ``probability``: class 1 at or above ``threshold``."""
    return label_of(class_names[int(probability >= threshold)])


def probability_name(class_names: Sequence[str]) -> str:
    """Name of the class-1 probability in CSVs and tables: ``p_dog`` for ``cats, dogs``, ``p_bee`` for
    ``ants, bees``."""
    return f"p_{label_of(class_names[1])}"


def check_threshold(threshold: float) -> float:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return threshold
