"""Reading checkpoints safely (``weights_only=True``: no code runs), checking that they are catdog_pl's, and
rebuilding their network for inference without the training code."""

from __future__ import annotations

import os

import torch

from catdog_pl.core.errors import CheckpointError
from catdog_pl.models.classifier import Classifier


def check_checkpoint(path: str | os.PathLike) -> dict:
    """Read ``path`` safely and check it is a catdog_pl checkpoint; return it."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for non-checkpoints: pickle, zip, unsafe globals
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a catdog_pl checkpoint (cannot be read safely: {reason})") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not state or not hparams or "image_size" not in hparams or not any(key.startswith("net.") for key in state):
        raise CheckpointError(f"{path}: not a catdog_pl checkpoint (no catdog_pl weights and hyper-parameters)")
    return checkpoint


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
