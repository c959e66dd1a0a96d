import math

import pytest
import torch
from torch import nn

from catdog_pl.models.networks import KerasCNN, flatten_width


def test_parameter_count_matches_keras():
    # Keras model.summary() of the original: 896 + 9,248 + 802,944 + 129 = 813,217.
    assert sum(p.numel() for p in KerasCNN().parameters()) == 813_217
    assert flatten_width(64) == 32 * 14 * 14


@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_forward_shape_and_finite(image_size):
    net = KerasCNN(image_size=image_size)
    logits = net(torch.rand(3, 3, image_size, image_size))
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="too small"):
        KerasCNN(image_size=8)


def test_keras_initialisation():
    net = KerasCNN()
    for layer in (net.conv1, net.conv2, net.fc1, net.fc2):
        assert torch.count_nonzero(layer.bias) == 0
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0].numel() // layer.weight.shape[1]
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole Glorot range


def test_pool_before_relu_equals_keras_order():
    torch.manual_seed(0)
    net = KerasCNN()
    x = torch.randn(4, 3, 64, 64)
    keras_order = nn.Sequential(
        net.conv1, nn.ReLU(), net.pool, net.conv2, nn.ReLU(), net.pool, nn.Flatten(), net.fc1, nn.ReLU(), net.fc2
    )
    torch.testing.assert_close(net(x), keras_order(x).squeeze(1), rtol=0, atol=0)
