"""Photos in: the ``LightningDataModule`` (``catdog_pl.data.CatDogDataModule``, the class path configs use), folder
layouts, image reading, the decode-once cache, transforms, prediction inputs and ``prepare``. Imports ``core`` only.
"""

from catdog_pl._moved import old_attribute


def __getattr__(name: str) -> object:
    return old_attribute(__name__, "catdog_pl.data.datamodule", name)
