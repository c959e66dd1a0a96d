import numpy as np
import pytest
import torch
from PIL import Image

from catdog_pl.data.transforms import (
    build_eval_transform,
    build_train_transform,
    train_source_size,
    zoom_to_crop,
)

from .helpers import coordinate_image


def test_eval_transform_is_deterministic_and_scaled():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8))
    transform = build_eval_transform(64)
    first, second = transform(img), transform(img)
    assert first.shape == (3, 64, 64) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert first.max() > 0.9  # scaled by 1/255, not left at 0-255


def test_zoom_mapping():
    scale, ratio = zoom_to_crop(0.2)
    assert scale == pytest.approx((0.64, 1.0))
    assert ratio == pytest.approx((0.8, 1.25))
    assert train_source_size(64, 0.2) == 80
    with pytest.raises(ValueError):
        zoom_to_crop(1.0)


def test_train_transform_crops_within_keras_zoom_and_flips_half_the_time():
    torch.manual_seed(0)
    transform = build_train_transform(64, zoom=0.2, shear=0.2)
    img = coordinate_image()
    widths, heights, flips = [], [], 0
    for _ in range(300):
        out = transform(img)
        assert out.shape == (3, 64, 64) and out.min() >= 0.0 and out.max() <= 1.0
        red, green = out[0], out[1]
        left, right = red[32, 0].item(), red[32, -1].item()
        flips += left > right
        # The window's extent, in units of the image side (pixel centres sit half a pixel in).
        widths.append(abs(right - left) * 64 / 63)
        heights.append(abs(green[-1, 32] - green[0, 32]).item() * 64 / 63)
    widths, heights = np.array(widths), np.array(heights)
    tol = 0.04  # interpolation at the window's edges
    assert widths.max() <= 1.0 + tol and heights.max() <= 1.0 + tol
    area, aspect = widths * heights, widths / heights
    assert area.min() >= 0.64 - tol and aspect.min() >= 0.8 - tol and aspect.max() <= 1.25 + tol
    assert area.min() < 0.75 and aspect.min() < 0.9 and aspect.max() > 1.1  # the whole range is used
    assert widths.std() > 0.03 and heights.std() > 0.03  # it does zoom
    assert 0.4 < flips / 300 < 0.6


def test_train_transform_without_augmentation_matches_eval_size():
    transform = build_train_transform(64, zoom=0.0, shear=0.0, hflip=False)
    img = coordinate_image()
    out = transform(img)
    assert out.shape == (3, 64, 64)
    assert torch.equal(out, transform(img))
