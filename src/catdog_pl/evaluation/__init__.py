"""Figures and pictures of a model's answers (accuracy with its interval, confusion counts, worst mistakes; grids
and confusion images), shared by training's TensorBoard pictures and ``report``. Imports ``core`` only.
"""

from catdog_pl._moved import old_attribute


def __getattr__(name: str) -> object:
    return old_attribute(__name__, "catdog_pl.evaluation.metrics", name)
