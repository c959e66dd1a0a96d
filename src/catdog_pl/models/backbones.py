"""Networks by name: ``keras_cnn`` (the original), ``scratch_resnet``, or any timm model, each with one logit out.
Their preprocessing is :mod:`~catdog_pl.models.preprocessing`, their weight files :mod:`~catdog_pl.models.weights`."""

from __future__ import annotations

import torch
from torch import nn

from catdog_pl.models.networks import KerasCNN, ScratchResNet, squeeze_single
from catdog_pl.models.weights import map_state_dict, read_state_dict, resolve_weights_file

OWN_BACKBONES = ("keras_cnn", "scratch_resnet")


class TimmBinary(nn.Module):
    """A timm model with its classifier replaced by ``num_outputs`` logits (one for two classes)."""

    def __init__(self, model: nn.Module, num_outputs: int = 1) -> None:
        super().__init__()
        model.reset_classifier(num_outputs)
        self.model = model

    def head(self) -> nn.Module:
        return self.model.get_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head sees: the pooled ``(B, F)`` features of the pretrained body."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The head on :meth:`features`: ``forward(x) == logits(features(x))``."""
        return squeeze_single(self.model.get_classifier()(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_single(self.model(x))  # (B,) or (B, C)


def create_backbone(
    name: str, image_size: int, pretrained: bool = False, weights: str | None = None, num_outputs: int = 1
) -> nn.Module:
    """The network called ``name`` with ``num_outputs`` logits out (one for two classes); ``pretrained`` takes
    timm's download, ``weights`` a local state-dict or safetensors file (read with ``weights_only=True``)."""
    if name == "keras_cnn":
        if pretrained or weights:
            raise ValueError("keras_cnn has no pretrained weights: it trains from Keras's initialisation")
        return KerasCNN(image_size=image_size, num_outputs=num_outputs)
    if name == "scratch_resnet":
        if pretrained or weights:
            raise ValueError("scratch_resnet trains from random weights; choose a timm backbone for pretrained ones")
        return ScratchResNet(num_outputs=num_outputs)
    import timm

    model = timm.create_model(name, pretrained=pretrained and not weights)
    if weights:
        path = resolve_weights_file(weights)
        model.load_state_dict(map_state_dict(read_state_dict(path), model.state_dict(), path))
    return TimmBinary(model, num_outputs)


def has_pretrained_body(net: nn.Module) -> bool:
    """Whether ``net`` is a pretrained body with a new head (a timm model), the kind that a linear probe or
    frozen epochs fine-tune; the project's own networks train whole from their initialisation."""
    return isinstance(net, TimmBinary)


def body_modules(net: nn.Module) -> list[nn.Module]:
    """The modules of ``net`` outside its head that hold parameters or statistics of their own (leaves, and
    containers such as timm's ``BatchNormAct2d``): what fine-tuning freezes first."""
    head = {id(p) for p in head_parameters(net)}
    owners = [m for m in net.modules() if not list(m.children()) or m._parameters or m._buffers]
    return [m for m in owners if not any(id(p) in head for p in m.parameters(recurse=False))]


def head_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters of the layer that replaced the pretrained classifier (trained first when fine-tuning)."""
    head = net.head() if isinstance(net, TimmBinary) else getattr(net, "head", None)
    return list(head.parameters()) if isinstance(head, nn.Module) else []
