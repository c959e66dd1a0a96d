"""Errors that catdog_pl reports to users as one line naming the file or folder at fault."""

from __future__ import annotations


class CatDogError(Exception):
    """Base class: the command line prints ``catdog_pl: error: <message>`` and exits with status 2."""


class DataLayoutError(CatDogError, ValueError):
    """The data folder is not laid out as the original's ``training_set/`` and ``test_set/`` of two classes."""


class ImageError(CatDogError, OSError):
    """One file could not be read as an image; the message starts with its path."""


class TooManyPixelsError(ImageError):
    """An image whose header names more pixels than the reader's limit: refused before it is decoded."""


class ImageFormatError(ImageError):
    """An image in a format the reader does not accept (``serve`` takes camera and web formats only)."""


class CheckpointError(CatDogError, ValueError):
    """A file given as a checkpoint is not a catdog_pl checkpoint, or does not fit the configuration."""


class InputError(CatDogError, ValueError):
    """Prediction inputs that name nothing to predict: a missing path, a folder or glob without images."""


class OutputError(CatDogError, OSError):
    """A result (CSV, report, export) cannot be written; the message starts with its path."""
