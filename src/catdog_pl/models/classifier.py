"""The network as inference runs it: pixels in [0, 1] -> the backbone's input normalisation -> logits, and
probabilities with the optional mirror-image average (test-time augmentation).

:class:`~catdog_pl.training.module.CatDogModule` is a ``Classifier`` that also trains, so its checkpoints hold a
``Classifier``'s weights under the same names (``net.*``): inference rebuilds one from a checkpoint's
hyper-parameters with :meth:`Classifier.from_hparams` without importing Lightning's training code.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from catdog_pl.core.labels import Classes
from catdog_pl.models.backbones import create_backbone
from catdog_pl.models.preprocessing import resolve_preprocessing


class Classifier(nn.Module):
    """``net`` with its normalisation: ``(B, 3, S, S)`` pixels in [0, 1] -> logits, ``(B,)`` of class 1 for a
    one-logit (binary) head, else ``(B, C)``; :meth:`probabilities` gives ``(B, C)`` for either.

    Args:
        net: the backbone, with its head (one logit for two classes, else one per class).
        mean: per-channel mean subtracted from the pixels.
        std: per-channel divisor after the mean.
        tta: :meth:`probabilities` averages each image's and its mirror image's.
        temperature: logits are divided by it before the sigmoid or softmax (temperature scaling, fitted on
            validation photos after training): it changes the probabilities, never the most probable class.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        tta: bool = False,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        # channels_last: the CPU (oneDNN) and GPU (cuDNN) convolutions run 1.5-2.5x faster in NHWC.
        self.net = net.to(memory_format=torch.channels_last)
        self.normalize = tuple(mean) != (0.0, 0.0, 0.0) or tuple(std) != (1.0, 1.0, 1.0)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.tta = tta
        self.temperature = float(temperature)

    @classmethod
    def from_hparams(cls, hparams: Mapping) -> Classifier:
        """The untrained network a checkpoint's ``hyper_parameters`` describe (load its ``state_dict`` next); no
        pretrained weights are fetched or read."""
        backbone = hparams.get("backbone", "keras_cnn")
        prep = resolve_preprocessing(
            backbone, hparams.get("image_size"), hparams.get("mean"), hparams.get("std"), hparams.get("interpolation")
        )
        net = create_backbone(
            backbone, prep.image_size, pretrained=False, weights=None, num_outputs=num_outputs(hparams)
        )
        return cls(net, prep.mean, prep.std, bool(hparams.get("tta", False)), float(hparams.get("temperature", 1.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from ``(B, 3, S, S)`` pixels in [0, 1]: ``(B,)`` of class 1 (binary), or ``(B, C)``."""
        return self.net(self.network_input(x))

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` pixels in [0, 1], normalised for the network, channels-last."""
        if self.normalize:
            x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Every class's probability, ``(B, C)``; the mean over the image and its mirror with ``tta``."""
        return self.with_mirror(x, to_probabilities(self(x), self.temperature))

    def with_mirror(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """With ``tta``, ``probs`` (``(B, C)``, those of ``x``) averaged with its mirror image's; else ``probs``."""
        if self.tta:
            probs = (probs + to_probabilities(self(x.flip(-1)), self.temperature)) / 2
        return probs


def to_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``(B, C)`` probabilities from a one-logit head's ``(B,)`` (``[1 - p, p]``, the sigmoid) or ``(B, C)`` logits
    (the softmax), the logits divided by ``temperature`` first."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if logits.dim() == 1:
        p = torch.sigmoid(logits)
        return torch.stack([1.0 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def num_outputs(hparams: Mapping) -> int:
    """Logits of the head that a model's hyper-parameters describe: 1 for a binary task, else one per class."""
    classes = Classes.of(dict(hparams))
    return 1 if classes.binary else len(classes.names)
