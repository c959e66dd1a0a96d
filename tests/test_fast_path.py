"""The cached fast path gives the network the same images and the same augmentation as the streaming path."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from catdog_pl.data.cache import decode_all
from catdog_pl.data.datamodule import CatDogDataModule
from catdog_pl.data.transforms import BatchTrainAugment, sample_crop_boxes, zoom_to_crop

from .helpers import coordinate_image


def ecdf_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def test_cached_eval_images_equal_streamed_ones(tiny_data):
    streamed = CatDogDataModule(data_dir=str(tiny_data), num_workers=0, cache=False)
    cached = CatDogDataModule(data_dir=str(tiny_data), num_workers=0, cache=True)
    for dm in (streamed, cached):
        dm.setup("test")
    a = streamed.prepare_batch(next(iter(streamed.test_dataloader())), train=False)
    b = cached.prepare_batch(next(iter(cached.test_dataloader())), train=False)
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)


def test_crop_distribution_matches_random_resized_crop():
    torch.manual_seed(0)
    n, side = 4000, 80
    scale, ratio = zoom_to_crop(0.2)
    image = torch.zeros(3, side, side)
    reference = np.array([v2.RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)])
    batched = sample_crop_boxes(n, side, scale, ratio).numpy()
    for column, name in enumerate(("top", "left", "height", "width")):
        assert ecdf_distance(reference[:, column], batched[:, column]) < 0.05, name
    area = lambda boxes: boxes[:, 2] * boxes[:, 3] / side**2  # noqa: E731
    assert ecdf_distance(area(reference), area(batched)) < 0.05


def test_shear_and_flip_distribution_matches_random_affine_and_flip():
    torch.manual_seed(0)
    n = 4000
    reference = np.array(
        [v2.RandomAffine.get_params((0.0, 0.0), None, None, (-0.2, 0.2, 0.0, 0.0), (64, 64))[3][0] for _ in range(n)]
    )
    params = BatchTrainAugment(64, zoom=0.2, shear=0.2).sample(n, 80)
    assert ecdf_distance(reference, params["shear"].numpy()) < 0.05
    assert abs(params["shear"]).max() <= 0.2
    assert 0.47 < params["flip"].float().mean() < 0.53


def test_batch_augment_windows_stay_in_the_keras_zoom_range():
    torch.manual_seed(0)
    source = torch.from_numpy(np.asarray(coordinate_image(200).resize((80, 80), Image.Resampling.BILINEAR)))
    batch = source.permute(2, 0, 1).unsqueeze(0).repeat(300, 1, 1, 1)  # (300, 3, 80, 80) uint8
    out = BatchTrainAugment(64, zoom=0.2, shear=0.2)(batch)
    assert out.shape == (300, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    red, green = out[:, 0], out[:, 1]
    widths = (red[:, 32, -1] - red[:, 32, 0]).abs().numpy() * 64 / 63
    heights = (green[:, -1, 32] - green[:, 0, 32]).abs().numpy() * 64 / 63
    flips = (red[:, 32, 0] > red[:, 32, -1]).float().mean().item()
    tol = 0.04
    area, aspect = widths * heights, widths / heights
    assert widths.max() <= 1 + tol and heights.max() <= 1 + tol
    assert area.min() >= 0.64 - tol and aspect.min() >= 0.8 - tol and aspect.max() <= 1.25 + tol
    assert area.min() < 0.75 and aspect.min() < 0.9 and aspect.max() > 1.1
    assert 0.4 < flips < 0.6


def test_batch_augment_without_augmentation_is_the_identity():
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    out = BatchTrainAugment(64, zoom=0.0, shear=0.0, hflip=False)(images)
    torch.testing.assert_close(out, images.float() / 255, rtol=0, atol=1e-5)


def test_each_image_gets_its_own_parameters():
    torch.manual_seed(0)
    image = torch.from_numpy(np.asarray(coordinate_image(80))).permute(2, 0, 1)
    out = BatchTrainAugment(64)(image.unsqueeze(0).repeat(8, 1, 1, 1))
    distinct = {tuple(out[i, :, 0, 0].tolist()) for i in range(8)}
    assert len(distinct) > 4  # not one draw for the whole batch (vision #8484)


@pytest.mark.parametrize("side", [16, 64])
def test_decode_all_shapes(tiny_data, side):
    paths = sorted(str(p) for p in (tiny_data / "test_set" / "cats").glob("*.jpg"))
    images, errors = decode_all(paths, side, threads=2)
    assert errors == [""] * len(paths)
    assert images.shape == (len(paths), 3, side, side) and images.dtype == torch.uint8
    assert images.float().mean() < 120  # dark cats
    assert not math.isnan(images.float().std())
