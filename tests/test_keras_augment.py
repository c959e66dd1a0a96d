"""The exact Keras mode of the batched augmentation against a port of Keras 2's own transform, Keras's nearest-neighbour
loading, and the richer views: each off by default, each reproducible under a seed."""

import inspect

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from catdog_pl.core.errors import DataLayoutError
from catdog_pl.data.cache import decode_squashed
from catdog_pl.data.datamodule import CatDogDataModule
from catdog_pl.data.images import prepare_image
from catdog_pl.data.inputs import PredictionSet
from catdog_pl.data.transforms import BatchTrainAugment

ndimage = pytest.importorskip("scipy.ndimage")


def keras_apply_transform(x: np.ndarray, zx: float, zy: float, shear: float, flip: bool) -> np.ndarray:
    """Keras 2's ``ImageDataGenerator.apply_transform`` for zoom, shear and a horizontal flip, on an ``(H, W, C)``
    float image: ``keras_preprocessing`` 1.1.2's ``apply_affine_transform`` (scipy, ``order=1``,
    ``fill_mode='nearest'``) and ``transform_matrix_offset_center``, then ``flip_axis`` on the columns."""
    matrix = None
    if shear != 0:
        s = np.deg2rad(shear)
        matrix = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        matrix = zoom if matrix is None else np.dot(matrix, zoom)
    if matrix is not None:
        h, w = x.shape[0], x.shape[1]
        o_x, o_y = float(h) / 2 + 0.5, float(w) / 2 + 0.5
        offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
        reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
        matrix = np.dot(np.dot(offset, matrix), reset)
        channels = [
            ndimage.affine_transform(channel, matrix[:2, :2], matrix[:2, 2], order=1, mode="nearest", cval=0.0)
            for channel in np.rollaxis(x, 2, 0)
        ]
        x = np.rollaxis(np.stack(channels, axis=0), 0, 3)
    if flip:
        x = x[:, ::-1]
    return x


def photo(side: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth photo-like ``(side, side, 3)`` uint8 image with detail at every scale, and distinct edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = np.stack([255 * xx, 255 * yy, 128 + 100 * np.sin(9 * xx + 5 * yy)], axis=2)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8


PARAMS = [  # zx, zy, shear (degrees), flip
    (0.8, 1.2, 0.2, False),
    (1.2, 0.85, -0.2, True),
    (1.13, 1.19, 0.0, False),
    (0.92, 0.81, 12.0, True),
    (1.0, 1.0, 0.0, True),
]


def test_keras_mode_matches_keras_apply_transform_on_fixed_parameters():
    image = photo()
    augment = BatchTrainAugment(64, mode="keras")
    zx, zy, shear, flip = (torch.tensor(column) for column in zip(*PARAMS, strict=True))
    params = {"zx": zx, "zy": zy, "shear": shear, "flip": flip}
    out = augment.geometry(as_batch(*[image] * len(PARAMS)), params)  # (5, 3, 64, 64), 0-255
    for i, (zx, zy, shear, flip) in enumerate(PARAMS):
        reference = keras_apply_transform(image.astype(np.float32), zx, zy, shear, flip)
        ours = out[i].permute(1, 2, 0).numpy()
        # Interpolation rounding: float32 grid coordinates against scipy's float64, on a 0-255 scale.
        np.testing.assert_allclose(ours, reference, rtol=0, atol=0.02, err_msg=str(PARAMS[i]))
    # A flip alone is the mirror image.
    np.testing.assert_allclose(out[4].permute(1, 2, 0).numpy(), image[:, ::-1].astype(np.float32), atol=1e-3)


def test_keras_mode_forward_is_the_reference_of_its_own_draws():
    image, other = photo(seed=1), photo(seed=2)
    augment = BatchTrainAugment(64, mode="keras")
    params = augment.sample(2, 64, generator=torch.Generator().manual_seed(3))
    out = augment(as_batch(image, other), generator=torch.Generator().manual_seed(3))  # (2, 3, 64, 64) in [0, 1]
    for i, source in enumerate((image, other)):
        zx, zy, shear, flip = (params[k][i].item() for k in ("zx", "zy", "shear", "flip"))
        reference = keras_apply_transform(source.astype(np.float32), zx, zy, shear, bool(flip)) / 255
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), reference, rtol=0, atol=1e-4)


def test_keras_parameters_are_drawn_as_keras_draws_them():
    params = BatchTrainAugment(64, zoom=0.2, shear=0.2, mode="keras").sample(20000, 64)
    zx, zy, shear = params["zx"].numpy(), params["zy"].numpy(), params["shear"].numpy()
    for values, low, high in ((zx, 0.8, 1.2), (zy, 0.8, 1.2), (shear, -0.2, 0.2)):
        assert low <= values.min() < low + 0.01 and high - 0.01 < values.max() <= high
        assert abs(values.mean() - (low + high) / 2) < 0.01 * (high - low) * 10  # uniform, centred
    assert abs(np.corrcoef(zx, zy)[0, 1]) < 0.03  # independent: the aspect is squashed as often as not
    assert ((zx > 1) & (zy > 1)).mean() == pytest.approx(0.25, abs=0.02)  # zoom-outs on both axes, a quarter
    assert 0.48 < params["flip"].float().mean() < 0.52


def test_zoom_out_fills_the_border_by_repeating_edge_pixels():
    image = np.maximum(photo(), 40)  # no black pixel, so that a constant (zero) fill would show
    augment = BatchTrainAugment(64, mode="keras")
    params = {
        "zx": torch.tensor([1.2]),
        "zy": torch.tensor([1.2]),
        "shear": torch.zeros(1),
        "flip": torch.tensor([False]),
    }
    out = augment.geometry(as_batch(image), params)[0].permute(1, 2, 0).numpy()  # (64, 64, 3), 0-255
    # Output row r samples input row 1.2 * (r - 32.5) + 32.5, below 0 for r <= 5: those rows all repeat row 0.
    for r in range(1, 6):
        np.testing.assert_allclose(out[r], out[0], atol=1e-3)
    np.testing.assert_allclose(out[:6, :6], np.broadcast_to(image[0, 0].astype(np.float32), (6, 6, 3)), atol=1e-3)
    assert not np.allclose(out[6], out[0], atol=1.0)  # inside the photo, rows differ
    assert out.min() >= 40 - 1e-3  # the edge's colours everywhere, no constant fill


def test_crop_mode_is_the_default_and_never_fills():
    assert BatchTrainAugment().mode == "crop"
    assert inspect.signature(CatDogDataModule).parameters["augment"].default == "crop"


def test_nearest_loading_equals_pil_nearest_resize(tmp_path):
    """Keras's ``load_img(target_size=(64, 64), interpolation='nearest')``: the whole photo decoded (no JPEG draft),
    converted to RGB, resized with PIL's NEAREST; the cache, ``predict`` and the service read it alike."""
    path = tmp_path / "photo.jpg"
    big = Image.fromarray(photo(400)).resize((400, 300))
    big.save(path, quality=92)
    with Image.open(path) as img:
        keras = np.asarray(img.convert("RGB").resize((64, 64), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(decode_squashed(str(path), 64, interpolation="nearest"), keras)
    np.testing.assert_array_equal(prepare_image(str(path), 64, "nearest"), keras)
    predicted, _, error = PredictionSet([str(path)], 64, interpolation="nearest")[0]
    assert error == ""
    np.testing.assert_allclose(predicted.permute(1, 2, 0).numpy(), keras / 255, atol=1e-6)
    # The antialiased default differs: nearest is a real change of what the network sees.
    assert np.abs(decode_squashed(str(path), 64).astype(int) - keras).mean() > 2


def test_keras_mode_data_module_trains_and_evaluates_on_nearest_64px(tiny_data):
    dm = CatDogDataModule(data_dir=str(tiny_data), num_workers=0, cache=True, augment="keras", interpolation="nearest")
    dm.setup("fit")
    assert dm.train_set.images.shape[-1] == 64 and dm.val_set.images.shape[-1] == 64
    path = dm.layout.train[0][0]
    with Image.open(path) as img:
        keras = np.asarray(img.convert("RGB").resize((64, 64), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(dm.train_set.images[0].permute(1, 2, 0).numpy(), keras)
    images, _ = dm.prepare_batch(next(iter(dm.train_dataloader())), train=True)
    assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    # Streaming hands the same 64-px uint8 photos to the same batched augmentation.
    streamed = CatDogDataModule(
        data_dir=str(tiny_data), num_workers=0, cache=False, augment="keras", interpolation="nearest"
    )
    streamed.setup("fit")
    image, _, _ = streamed.train_set[0]
    assert image.dtype == torch.uint8
    torch.testing.assert_close(image, dm.train_set.images[0], rtol=0, atol=0)


RICHER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "erasing": 0.5, "aspect": (0.75, 4 / 3)}


def test_richer_views_are_off_by_default():
    defaults = inspect.signature(CatDogDataModule).parameters
    assert {name: defaults[name].default for name in RICHER} == {name: 0.0 for name in RICHER} | {"aspect": None}
    augment = CatDogDataModule().batch_augment
    assert augment.jitter == (0.0, 0.0, 0.0) and augment.erasing == 0.0 and augment.ratio == pytest.approx((0.8, 1.25))
    params = augment.sample(4, 80)
    assert set(params) == {"boxes", "shear", "flip"}
    images = torch.rand(4, 3, 64, 64)
    assert torch.equal(augment.colour(images, params), images)


@pytest.mark.parametrize(
    ("mode", "option"),
    [
        (mode, option)
        for mode in ("keras", "crop")
        for option in [None, *RICHER]
        if (mode, option) != ("keras", "aspect")
    ],
)
def test_every_augmentation_is_reproducible_under_a_seed(mode, option):
    augment = BatchTrainAugment(64, mode=mode, **({option: RICHER[option]} if option else {}))
    side = augment.source_size
    images = as_batch(*(photo(side, seed) for seed in range(8)))
    first = augment(images, generator=torch.Generator().manual_seed(7))
    again = augment(images, generator=torch.Generator().manual_seed(7))
    other = augment(images, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    torch.manual_seed(5)  # the global generator, as seed_everything leaves it for training
    a = augment(images)
    torch.manual_seed(5)
    assert torch.equal(a, augment(images))


def test_colour_jitter_is_torchvisions_per_image():
    images = torch.rand(3, 3, 32, 32)
    augment = BatchTrainAugment(32, brightness=0.5, contrast=0.5, saturation=0.5)
    params = {"brightness": torch.tensor([0.6, 1.0, 1.4]), "contrast": torch.tensor([1.3, 0.7, 1.0]),
              "saturation": torch.tensor([0.5, 1.0, 1.45])}  # fmt: skip
    out = augment.colour(images, params)
    for i in range(3):
        expected = F.adjust_brightness(images[i], params["brightness"][i].item())
        expected = F.adjust_contrast(expected, params["contrast"][i].item())
        expected = F.adjust_saturation(expected, params["saturation"][i].item())
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)
    drawn = augment.sample(2000, 32)
    for name in ("brightness", "contrast", "saturation"):
        assert 0.5 <= drawn[name].min() < 0.52 and 1.48 < drawn[name].max() <= 1.5


def test_random_erasing_paints_one_rectangle_on_the_chosen_images():
    augment = BatchTrainAugment(64, erasing=0.5)
    images = torch.rand(400, 3, 64, 64)
    params = augment.sample(400, 64, generator=torch.Generator().manual_seed(0))
    out = augment.colour(images, params)
    changed = (out != images).any(dim=1)  # (B, 64, 64)
    chosen = params["erase"]
    assert 0.4 < chosen.float().mean() < 0.6
    assert not changed[~chosen].any()
    areas = changed[chosen].sum(dim=(1, 2)).float() / 64**2
    assert areas.min() >= 0.015 and areas.max() <= 0.34
    for i in torch.nonzero(chosen).flatten()[:20].tolist():
        top, left, h, w = params["erase_boxes"][i].int().tolist()
        patch = out[i, :, top : top + h, left : left + w]
        assert changed[i].sum() == h * w
        torch.testing.assert_close(patch, params["erase_colour"][i].view(3, 1, 1).expand_as(patch))


def test_crop_aspect_range_is_used():
    augment = BatchTrainAugment(64, zoom=0.4, aspect=(0.75, 4 / 3))
    boxes = augment.sample(4000, augment.source_size)["boxes"]
    aspect = (boxes[:, 3] / boxes[:, 2]).numpy()
    assert aspect.min() >= 0.75 - 0.03 and aspect.max() <= 4 / 3 + 0.05
    assert aspect.min() < 0.78 and aspect.max() > 1.28


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"augment": "tf"}, "data.augment must be keras or crop, got 'tf'"),
        ({"brightness": 1.5}, "data.brightness must be in [0, 1)"),
        ({"erasing": -0.1}, "data.erasing must be a probability"),
        ({"augment": "keras", "aspect": (0.8, 1.2)}, "data.aspect must be"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_option(options, named):
    with pytest.raises(DataLayoutError) as error:
        CatDogDataModule(**options)
    assert named in str(error.value) and "\n" not in str(error.value)
