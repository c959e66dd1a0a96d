"""The module paths of release 0.2, before the package was cut into subpackages, kept importable for one release.

Users' saved ``config.yaml`` files and their own code name classes by these paths (``catdog_pl.visualize
.RunVisualizer``, ``catdog_pl.prediction.Predictor``). Importing an old path gives a module that looks each name up
in the new homes, with a ``FutureWarning`` that names the new path. The finder answers for these names alone and
leaves every other import to Python's own finders.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

#: Old module -> the modules that now hold its names, in the order they are searched.
MOVED: dict[str, tuple[str, ...]] = {
    "catdog_pl.errors": ("catdog_pl.core.errors",),
    "catdog_pl.labels": ("catdog_pl.core.labels",),
    "catdog_pl.csvfile": ("catdog_pl.core.csvfile",),
    "catdog_pl.devices": ("catdog_pl.core.devices",),
    "catdog_pl.threads": ("catdog_pl.core.parallel", "catdog_pl.serving.layout"),
    "catdog_pl.images": ("catdog_pl.data.images",),
    "catdog_pl.folders": ("catdog_pl.data.folders",),
    "catdog_pl.inputs": ("catdog_pl.data.inputs",),
    "catdog_pl.cache": ("catdog_pl.data.cache",),
    "catdog_pl.transforms": ("catdog_pl.data.transforms",),
    "catdog_pl.prepare": ("catdog_pl.data.prepare",),
    "catdog_pl.model": ("catdog_pl.models.networks",),
    "catdog_pl.backbones": ("catdog_pl.models.backbones", "catdog_pl.models.preprocessing", "catdog_pl.models.weights"),
    "catdog_pl.render": ("catdog_pl.evaluation.pictures",),
    "catdog_pl.module": ("catdog_pl.training.module",),
    "catdog_pl.shards": ("catdog_pl.training.shards",),
    "catdog_pl.visualize": ("catdog_pl.training.visualize",),
    "catdog_pl.ddp_watchdog": ("catdog_pl.training.watchdog",),
    "catdog_pl.checkpointing": ("catdog_pl.training.checkpointing",),
    "catdog_pl.checkpoints": ("catdog_pl.inference.checkpoints",),
    "catdog_pl.prediction": ("catdog_pl.inference.predictor", "catdog_pl.inference.writer"),
    "catdog_pl.runtime": (
        "catdog_pl.inference.runners",
        "catdog_pl.inference.card",
        "catdog_pl.inference.onnx",
        "catdog_pl.data.images",
    ),
    "catdog_pl.export": ("catdog_pl.inference.export",),
    "catdog_pl.serve": ("catdog_pl.serving.server",),
    "catdog_pl.uploads": ("catdog_pl.serving.uploads",),
    "catdog_pl.report": ("catdog_pl.reporting.report",),
}


class MovedModule(types.ModuleType):
    """An old module path: each attribute is looked up in the modules that now hold it."""

    def __init__(self, name: str, homes: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved in catdog_pl 0.3 to {', '.join(homes)}.")
        self.__homes = homes

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        for home in self.__homes:
            module = importlib.import_module(home)
            if hasattr(module, attribute):
                warnings.warn(
                    f"{self.__name__}.{attribute} is now {home}.{attribute}; the old path goes in the next release",
                    FutureWarning,
                    stacklevel=2,
                )
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r}")


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the names in :data:`MOVED` and nothing else."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return MovedModule(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install_moved_modules() -> None:
    """Put the finder on ``sys.meta_path`` once (importing catdog_pl twice, or reloading it, adds no second one)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


def old_attribute(package: str, home: str, attribute: str) -> object:
    """``catdog_pl.data.CatDogDataModule`` and ``catdog_pl.evaluation.format_accuracy``: names of the 0.2 modules
    whose paths are packages now, looked up in ``home`` (for a package's ``__getattr__``)."""
    if attribute.startswith("__"):
        raise AttributeError(attribute)
    module = importlib.import_module(home)
    if not hasattr(module, attribute):
        raise AttributeError(f"module {package!r} has no attribute {attribute!r}")
    if package != "catdog_pl.data" or attribute != "CatDogDataModule":  # the configs' class path stays as it is
        warnings.warn(
            f"{package}.{attribute} is now {home}.{attribute}; the old path goes in the next release",
            FutureWarning,
            stacklevel=3,
        )
    return getattr(module, attribute)
