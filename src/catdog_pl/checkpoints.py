"""Reading checkpoints safely (``weights_only=True``: no code runs) and checking that they are catdog_pl's."""

from __future__ import annotations

import os

import torch

from catdog_pl.errors import CheckpointError


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
