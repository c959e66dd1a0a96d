"""catdog_pl: the Keras "cats vs dogs" CNN on PyTorch Lightning."""

from catdog_pl.data import CatDogDataModule
from catdog_pl.model import SeedCNN
from catdog_pl.module import CatDogClassifier

__all__ = ["CatDogClassifier", "CatDogDataModule", "SeedCNN"]
__version__ = "0.1.0"
