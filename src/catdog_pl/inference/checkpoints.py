"""Reading checkpoints safely (``weights_only=True``: no code runs), checking that they are catdog_pl's and that
their hyper-parameters ask for nothing but building the network (no download, no other file, a sane size), and
rebuilding their network for inference without the training code."""

from __future__ import annotations

import os
import re

import torch

from catdog_pl.core.errors import CheckpointError
from catdog_pl.core.resample import RESAMPLE
from catdog_pl.models.backbones import OWN_BACKBONES
from catdog_pl.models.classifier import Classifier

#: The input sizes a checkpoint may name: the Keras CNN's dense layer grows with the square of the size (1,024 px
#: is 264 M weights), so a size past this is a crafted file, not a model.
IMAGE_SIZES = range(16, 1025)
#: Schemes of paths that are not local files (``https://``, ``s3://``, ...).
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: str | os.PathLike) -> bool:
    return bool(URL.match(str(path)))


def check_checkpoint(path: str | os.PathLike) -> dict:
    """Read ``path`` safely and check it is a catdog_pl checkpoint with hyper-parameters that build only its own
    network (:func:`check_hparams`); return it."""
    if is_url(path):
        raise CheckpointError(
            f"{path}: checkpoints are read from local files only; download it from a source you trust and pass "
            "the local path"
        )
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for non-checkpoints: pickle, zip, unsafe globals
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a catdog_pl checkpoint (cannot be read safely: {reason})") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if (
        not isinstance(state, dict)
        or not isinstance(hparams, dict)
        or "image_size" not in hparams
        or not any(isinstance(key, str) and key.startswith("net.") for key in state)
    ):
        raise CheckpointError(f"{path}: not a catdog_pl checkpoint (no catdog_pl weights and hyper-parameters)")
    check_hparams(path, hparams)
    return checkpoint


def check_hparams(path: str | os.PathLike, hparams: dict) -> None:
    """Refuse, with one line naming ``path`` and the field, hyper-parameters that would make building the network
    do more than build it: a download (``pretrained``), reading another file (``weights``), an unknown backbone, an
    input size outside :data:`IMAGE_SIZES`, or values of the wrong kind."""

    def refuse(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{path}: hyper-parameter {field}={hparams.get(field)!r} refused: {why}")

    if hparams.get("pretrained"):
        raise refuse("pretrained", "a checkpoint carries its trained weights; it must not ask for a download")
    if hparams.get("weights") is not None:
        raise refuse("weights", "a checkpoint carries its trained weights; it must not name another file to read")
    backbone = hparams.get("backbone", "keras_cnn")
    if not isinstance(backbone, str) or not (backbone in OWN_BACKBONES or is_timm_model(backbone)):
        raise refuse("backbone", f"expected {', '.join(OWN_BACKBONES)} or a timm model name")
    size = hparams.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size not in IMAGE_SIZES):
        raise refuse("image_size", f"expected a whole number of pixels from {IMAGE_SIZES.start} to {IMAGE_SIZES[-1]}")
    names = hparams.get("class_names")
    if names is not None and (
        not isinstance(names, (list, tuple))
        or not 2 <= len(names) <= 100_000
        or not all(isinstance(name, str) for name in names)
    ):
        raise refuse("class_names", "expected a list of 2 or more class names")
    threshold = hparams.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise refuse("threshold", "expected a probability between 0 and 1")
    temperature = hparams.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.01 <= temperature <= 100:
        raise refuse("temperature", "expected a number from 0.01 to 100 that divides the logits")
    interpolation = hparams.get("interpolation")
    if interpolation is not None and interpolation not in RESAMPLE:
        raise refuse("interpolation", f"expected {' or '.join(RESAMPLE)}")
    for field in ("mean", "std"):
        value = hparams.get(field)
        if value is not None and (
            not isinstance(value, (list, tuple))
            or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise refuse(field, "expected three numbers")


def is_timm_model(name: str) -> bool:
    """Whether timm builds a model called ``name`` (timm imported only for a name that is not one of ours)."""
    import timm

    return bool(timm.is_model(name))


def describe(hparams: dict) -> str:
    """``keras_cnn at 64 px``: the network and input size a checkpoint or configuration names."""
    return f"{hparams.get('backbone', 'keras_cnn')} at {hparams.get('image_size')} px"


def load_classifier(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """The network a checkpoint holds, as a :class:`Classifier` with its weights, and its hyper-parameters; read
    with ``weights_only=True``, and nothing fetched or read but the file (the weights are the checkpoint's own)."""
    checkpoint = check_checkpoint(path)
    hparams = dict(checkpoint["hyper_parameters"], pretrained=False, weights=None)
    model = Classifier.from_hparams(hparams)
    try:
        model.load_state_dict({k: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")})
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [type(error).__name__]
        raise CheckpointError(f"{path}: its weights do not fit {describe(hparams)} ({first[0].strip()})") from None
    return model.to(map_location), hparams
