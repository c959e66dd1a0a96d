"""The networks written here, as plain ``nn.Module``\\ s: the Keras tutorial's CNN, kept layer for layer, and a
small residual network for training from scratch. Pretrained backbones come from timm
(:mod:`catdog_pl.models.backbones`).
Each returns one logit per image, shape ``(B,)``: positive means class 1."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def flatten_width(image_size: int, channels: int = 32) -> int:
    """Width of the flattened feature map for a square input of ``image_size`` pixels."""
    side = image_size
    for _ in range(2):  # two blocks: 3x3 valid conv (-2), then 2x2 max-pool (//2)
        side = (side - 2) // 2
    if side < 1:
        raise ValueError(f"image_size={image_size} is too small for two conv blocks; use at least 10")
    return channels * side * side


class KerasCNN(nn.Module):
    """The original Sequential CNN of the Keras tutorial, layer for layer.

    ``Conv2D(32, 3, relu) -> MaxPool(2) -> Conv2D(32, 3, relu) -> MaxPool(2) -> Flatten -> Dense(128, relu)
    -> Dense(1)``. The last layer returns one logit (the sigmoid lives in the loss, ``BCEWithLogitsLoss``, and in
    prediction). At 64x64 it has 813,217 parameters, the Keras model's count. With ``num_outputs`` C > 1 the last
    layer is ``Dense(C)``, for C classes (the Keras tutorial's own multi-class variant: softmax in the loss).

    Two details keep it faithful and fast:

    - Weights are initialised as Keras does by default: Glorot-uniform kernels and zero biases (PyTorch's default
      is Kaiming-uniform with non-zero biases, which trains differently).
    - Each block applies max-pooling before the ReLU. ``maxpool(relu(x)) == relu(maxpool(x))`` exactly, since
      both are monotone element-wise / order statistics, and pooling first runs the ReLU on a quarter of the data.
    """

    def __init__(self, image_size: int = 64, channels: int = 32, hidden: int = 128, num_outputs: int = 1) -> None:
        super().__init__()
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, channels, kernel_size=3)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(flatten_width(image_size, channels), hidden)
        self.fc2 = nn.Linear(hidden, num_outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform kernels and zero biases, Keras's defaults for Conv2D and Dense."""
        for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, 64, 64)
        x = torch.relu(self.pool(self.conv1(x)))  # (B, 32, 31, 31)
        x = torch.relu(self.pool(self.conv2(x)))  # (B, 32, 14, 14)
        return torch.flatten(x, 1)  # (B, 6272)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(self.features(x)))  # (B, 128)
        return squeeze_single(self.fc2(x))  # (B,) for one logit, else (B, C)


def squeeze_single(logits: torch.Tensor) -> torch.Tensor:
    """``(B, 1)`` -> ``(B,)``, the one-logit head's shape; ``(B, C)`` as it is."""
    return logits.squeeze(1) if logits.shape[1] == 1 else logits


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (ResNet's basic block); ``stride`` 2 halves the side."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity: deep nets train from the first step
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ScratchResNet(nn.Module):
    """A small ResNet for training from random weights on a CPU: a stride-2 stem, then one stage per width, each
    halving the side after the first, global average pooling and one logit. The defaults have 1,224,953 parameters.

    Args:
        widths: channels of each stage.
        blocks: basic blocks per stage.
        stem: channels of the stem's stride-2 convolution (few: it runs at half the input's side).
        dropout: dropout before the last layer.
        num_outputs: logits out: 1 for two classes, C for C classes.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: int = 1,
        stem: int = 24,
        dropout: float = 0.0,
        num_outputs: int = 1,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        layers, channels = [], stem
        for stage, width in enumerate(widths):
            for block in range(blocks):
                layers.append(BasicBlock(channels, width, stride=2 if stage > 0 and block == 0 else 1))
                channels = width
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, S / 2^len(widths), ...)
        return squeeze_single(self.head(x.mean(dim=(2, 3))))  # (B,) or (B, C)
