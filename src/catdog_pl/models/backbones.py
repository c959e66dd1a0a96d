"""Networks by name: ``keras_cnn`` (the original), ``scratch_resnet``, or any timm model, each with one logit out.
Their preprocessing is :mod:`~catdog_pl.models.preprocessing`, their weight files :mod:`~catdog_pl.models.weights`."""

from __future__ import annotations

import torch
from torch import nn

from catdog_pl.models.networks import KerasCNN, ScratchResNet
from catdog_pl.models.weights import map_state_dict, read_state_dict, resolve_weights_file

OWN_BACKBONES = ("keras_cnn", "scratch_resnet")


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
