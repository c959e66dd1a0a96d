"""The network of the Keras "cats vs dogs" tutorial as a plain ``nn.Module``."""

from __future__ import annotations

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


class SeedCNN(nn.Module):
    """The original Sequential CNN, layer for layer.

    ``Conv2D(32, 3, relu) -> MaxPool(2) -> Conv2D(32, 3, relu) -> MaxPool(2) -> Flatten -> Dense(128, relu)
    -> Dense(1)``. The last layer returns one logit (the sigmoid lives in the loss, ``BCEWithLogitsLoss``, and in
    prediction). At 64x64 it has 813,217 parameters, the Keras model's count.

    Two details keep it faithful and fast:

    - Weights are initialised as Keras does by default: Glorot-uniform kernels and zero biases (PyTorch's default
      is Kaiming-uniform with non-zero biases, which trains differently).
    - Each block applies max-pooling before the ReLU. ``maxpool(relu(x)) == relu(maxpool(x))`` exactly, since
      both are monotone element-wise / order statistics, and pooling first runs the ReLU on a quarter of the data.
    """

    def __init__(self, image_size: int = 64, channels: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, channels, kernel_size=3)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(flatten_width(image_size, channels), hidden)
        self.fc2 = nn.Linear(hidden, 1)
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
        """Return one logit per image, shape ``(B,)``; positive means "dog" (class 1)."""
        x = torch.relu(self.fc1(self.features(x)))  # (B, 128)
        return self.fc2(x).squeeze(1)  # (B,)
