"""catdog_pl: train an image classifier from a folder of photos, see what it learned, use it on new photos."""

from catdog_pl.data import CatDogDataModule
from catdog_pl.model import KerasCNN, ScratchResNet
from catdog_pl.module import CatDogModule
from catdog_pl.prediction import Prediction, Predictor

__all__ = ["CatDogDataModule", "CatDogModule", "KerasCNN", "Prediction", "Predictor", "ScratchResNet"]
__version__ = "0.2.0"
