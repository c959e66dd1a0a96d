"""catdog_pl: train an image classifier from a folder of photos, see what it learned, use it on new photos.

The public names below are imported on first use, so that ``import catdog_pl.serving`` (the ONNX server) does not
pay for torch and Lightning. ARCHITECTURE.md draws the subpackages and the rules on what each may import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from catdog_pl._moved import install_moved_modules

__version__ = "0.2.0"

#: Public name -> the module that defines it.
PUBLIC = {
    "CatDogDataModule": "catdog_pl.data.datamodule",
    "CatDogModule": "catdog_pl.training.module",
    "Classifier": "catdog_pl.models.classifier",
    "KerasCNN": "catdog_pl.models.networks",
    "ScratchResNet": "catdog_pl.models.networks",
    "Prediction": "catdog_pl.inference.predictor",
    "Predictor": "catdog_pl.inference.predictor",
}
__all__ = sorted(PUBLIC)

if TYPE_CHECKING:  # for type checkers and IDEs: the names below, without importing them at run time
    from catdog_pl.data.datamodule import CatDogDataModule  # noqa: F401  # noqa: F401
    from catdog_pl.inference.predictor import Prediction, Predictor  # noqa: F401  # noqa: F401
    from catdog_pl.models.classifier import Classifier  # noqa: F401  # noqa: F401
    from catdog_pl.models.networks import KerasCNN, ScratchResNet  # noqa: F401  # noqa: F401
    from catdog_pl.training.module import CatDogModule  # noqa: F401  # noqa: F401


def __getattr__(name: str) -> object:
    if name in PUBLIC:
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'catdog_pl' has no attribute {name!r}")


install_moved_modules()
