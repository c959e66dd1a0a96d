"""Train and eval transforms: the Keras ``ImageDataGenerator`` of the original, in two modes, and richer views.

The original::

    ImageDataGenerator(rescale=1/255, shear_range=0.2, zoom_range=0.2, horizontal_flip=True)
    flow_from_directory(..., target_size=(64, 64))      # load_img(..., interpolation='nearest')

The train augmentation runs on whole batches of cached uint8 images on the training device
(:class:`BatchTrainAugment`), each image with its own random parameters. It has two modes
(``--data.augment keras|crop``):

**keras** (``configs/cnn.yaml``; the mode that mirrors the original), setting by setting, from the Keras 2 source
(``keras_preprocessing`` 1.1.2, ``image_data_generator.py`` and ``affine_transformations.py``):

- ``target_size=(64, 64)`` and ``load_img(interpolation='nearest')``: every photo, for training and evaluation alike,
  is decoded whole (no JPEG draft) and squashed to 64x64 by PIL's ``NEAREST`` resize, aliased, without
  antialiasing (``--model.interpolation nearest``, which ``predict`` and ``serve`` then use too). The augmentation
  works on that 64x64 image, as Keras's does.
- ``rescale=1/255``: the division by 255 after the transform (Keras ``standardize`` runs after it, too).
- ``zoom_range=0.2``: ``zx`` and ``zy`` drawn independently from [0.8, 1.2] for each image (``get_random_transform``:
  ``np.random.uniform(0.8, 1.2, 2)``). They scale the *sampling* grid: below 1 the image is zoomed in, above 1
  zoomed out, with the aspect squashed whenever ``zx != zy``. Keras's ``zx`` scales the row (vertical) axis and
  ``zy`` the column axis (its matrix acts on array indices); here too.
- ``shear_range=0.2``: an angle in **degrees**, uniform in [-0.2, 0.2] (``np.deg2rad(shear)``): next to nothing,
  which is what the original really did.
- The matrix: ``offset @ (shear @ zoom) @ reset`` in (row, col) index coordinates, with
  ``shear = [[1, -sin s, 0], [0, cos s, 0]]``, ``zoom = diag(zx, zy)`` and Keras's centre at
  ``(h / 2 + 0.5, w / 2 + 0.5)`` (``transform_matrix_offset_center``; half a pixel past the true centre, kept).
  It maps each output pixel to the input point it samples.
- ``fill_mode='nearest'``, ``interpolation_order=1``: ``scipy.ndimage.affine_transform(order=1, mode='nearest')``,
  i.e. bilinear sampling with points outside the image clamped to its edge, so a zoom-out repeats the edge pixels.
  Here: ``grid_sample(mode='bilinear', padding_mode='border', align_corners=True)``, the same sampling.
- ``horizontal_flip=True``: a flip with p = 0.5, applied by Keras *after* the affine transform (``apply_transform``
  flips the transformed array), composed here into the same matrix.

Measured (``benchmarks/README.md``, means over seeds 42 / 1 / 2): ``configs/cnn.yaml`` in this mode reaches 0.757 on
``test_set`` and 0.725 on ``ood_dev`` in fp32, 0.754 / 0.719 in bf16 (the Keras original: 0.765 / 0.727). Each
fidelity change apart, in bf16, against the crop mode with antialiased loading (0.754 / 0.692): nearest-neighbour
photos +2.0 points on ``ood_dev``, the zoom-outs with filled edges +0.7, both +2.7; ``test_set`` within 1 point.

**crop** (``configs/scratch.yaml``; the replica's earlier approximation): zoom as a ``RandomResizedCrop`` inside
the photo, antialiased, never zooming out.

- ``zoom_range=0.2``: the window's area fraction ``zx * zy`` lies in [0.8², 1] = [0.64, 1] and its aspect ``zx / zy``
  in [0.8, 1.25], so ``scale=(0.64, 1.0), ratio=(0.8, 1.25)`` (``aspect`` sets another ratio range). To keep the
  crop sharp, the photo is first squashed to ``image_size / 0.8`` = 80 px, so that a 0.8 x 0.8 crop is taken at
  the output's resolution. No zoom-out, no filled borders.
- ``shear_range`` and ``horizontal_flip`` as above (the shear about the image centre).

**Richer views**, none in the original (each off by default, for either mode), drawn per image after the geometry:
colour jitter as torchvision's ``ColorJitter`` (``brightness``, ``contrast``, ``saturation``: a factor uniform in
[1 - v, 1 + v], applied in that order) and random erasing (``erasing``: with that probability, a rectangle of
2-33 % of the image, aspect 0.3-3.3, painted one random colour, as ``RandomErasing``).

Eval squashes every photo to ``image_size`` with the model's filter and scales to [0, 1]
(:func:`build_eval_transform`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torchvision.transforms import v2

from catdog_pl.core.devices import host_to_device
from catdog_pl.core.resample import RESAMPLE

#: Keras's ``zoom_range`` and ``shear_range`` of the original.
DEFAULT_ZOOM = 0.2
DEFAULT_SHEAR = 0.2


def zoom_to_crop(zoom: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Map a Keras ``zoom_range`` to ``RandomResizedCrop``'s ``(scale, ratio)`` for the crops inside the image."""
    if not 0.0 <= zoom < 1.0:
        raise ValueError(f"zoom must be in [0, 1), got {zoom}")
    low = 1.0 - zoom
    return (low * low, 1.0), (low, 1.0 / low)


def train_source_size(image_size: int, zoom: float = DEFAULT_ZOOM) -> int:
    """Side of the square the photo is squashed to before the random crop: the smallest crop is ``image_size``."""
    return math.ceil(image_size / (1.0 - zoom) - 1e-9)


#: torchvision's names for the filters of :data:`~catdog_pl.core.resample.RESAMPLE` (on a PIL image, the same PIL
#: filter).
INTERPOLATION = {name: v2.InterpolationMode(name) for name in RESAMPLE}


def build_eval_transform(image_size: int = 64, interpolation: str = "bilinear") -> v2.Compose:
    """Squash to ``image_size`` x ``image_size`` and scale to [0, 1]; used by validate, test and predict alike
    (on a PIL image, ``Resize`` is PIL's resize: :func:`~catdog_pl.data.images.squash`)."""
    return v2.Compose(
        [
            v2.Resize((image_size, image_size), interpolation=INTERPOLATION[interpolation], antialias=True),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def build_source_transform(side: int, interpolation: str = "bilinear") -> v2.Compose:
    """What the streaming path hands the batched augmentation: the photo squashed to ``side`` (the
    :attr:`BatchTrainAugment.source_size`) as a uint8 ``(3, side, side)`` tensor, exactly as the cache holds it."""
    return v2.Compose(
        [v2.Resize((side, side), interpolation=INTERPOLATION[interpolation], antialias=True), v2.ToImage()]
    )


def build_train_transform(
    image_size: int = 64,
    zoom: float = DEFAULT_ZOOM,
    shear: float = DEFAULT_SHEAR,
    hflip: bool = True,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Crop mode's augmentation one PIL image at a time: the reference that :class:`BatchTrainAugment`'s crop mode
    draws from the same distribution as (see the module docstring for the mapping)."""
    scale, ratio = zoom_to_crop(zoom)
    source = train_source_size(image_size, zoom)
    return v2.Compose(
        [
            v2.Resize((source, source), interpolation=INTERPOLATION[interpolation], antialias=True),
            v2.RandomResizedCrop(image_size, scale=scale, ratio=ratio, antialias=True),
            v2.RandomAffine(degrees=0.0, shear=shear),
            v2.RandomHorizontalFlip(0.5 if hflip else 0.0),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def sample_crop_boxes(
    batch: int,
    side: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``RandomResizedCrop.get_params`` for a batch of ``side`` x ``side`` images, each drawn independently.

    The same algorithm as torchvision's, vectorised: up to 10 tries of (area, log-aspect) per image, the first that
    fits wins; an image with no fitting try gets the central crop. Returns ``(B, 4)`` boxes ``(top, left, h, w)``.
    """
    tries = 10
    area = side * side * torch.empty(batch, tries, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(batch, tries, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= side) & (h > 0) & (h <= side)
    first = torch.argmax(fits.int(), dim=1)  # index of the first fitting try (0 when none fits)
    rows = torch.arange(batch, device=device)
    w, h, found = w[rows, first], h[rows, first], fits[rows, first]
    # Fallback: the whole image, clipped to the ratio range (a square image lies inside any range containing 1).
    w = torch.where(found, w, torch.full_like(w, side))
    h = torch.where(found, h, torch.full_like(h, side))
    top = torch.floor(torch.rand(batch, device=device, generator=generator) * (side - h + 1))
    left = torch.floor(torch.rand(batch, device=device, generator=generator) * (side - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def keras_matrix(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Keras 2's ``apply_affine_transform`` matrix, then its flip: ``(B, 3, 3)`` float64 maps from output to input
    pixel indices ``(row, col, 1)``, for the parameters ``zx``, ``zy``, ``shear`` (degrees) and ``flip``."""
    zx, zy = params["zx"].double(), params["zy"].double()
    shear = torch.deg2rad(params["shear"].double())
    batch = zx.shape[0]
    matrix = torch.zeros(batch, 3, 3, dtype=torch.float64)
    # shear @ zoom = [[1, -sin s], [0, cos s]] @ diag(zx, zy)
    matrix[:, 0, 0] = zx
    matrix[:, 0, 1] = -torch.sin(shear) * zy
    matrix[:, 1, 1] = torch.cos(shear) * zy
    matrix[:, 2, 2] = 1.0
    centre = torch.eye(3, dtype=torch.float64)
    centre[:2, 2] = torch.tensor([height / 2 + 0.5, width / 2 + 0.5], dtype=torch.float64)  # Keras's centre
    matrix = centre @ matrix @ torch.linalg.inv(centre)
    # Keras flips the transformed image: output column c is the transform's column w - 1 - c.
    flip = torch.eye(3, dtype=torch.float64).repeat(batch, 1, 1)
    flipped = params["flip"].bool()
    flip[flipped, 1, 1] = -1.0
    flip[flipped, 1, 2] = width - 1.0
    return matrix @ flip


def pixel_to_grid_theta(matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel-index maps ``(B, 3, 3)`` on ``(row, col, 1)`` as ``affine_grid`` thetas ``(B, 2, 3)`` on normalised
    ``(x, y, 1)`` with ``align_corners=True`` (-1 and 1 are the centres of the first and last pixels)."""
    # (x, y, 1) -> (row, col, 1)
    to_pixels = torch.tensor(
        [[0.0, (height - 1) / 2, (height - 1) / 2], [(width - 1) / 2, 0.0, (width - 1) / 2], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    return (torch.linalg.inv(to_pixels) @ matrix @ to_pixels)[:, :2].float()


#: The augmentation modes of :class:`BatchTrainAugment`.
AUGMENT_MODES = ("keras", "crop")

#: The data module's options that set the train augmentation -> :class:`BatchTrainAugment`'s arguments.
AUGMENT_OPTIONS = {
    "zoom": "zoom",
    "shear": "shear",
    "hflip": "hflip",
    "augment": "mode",
    "aspect": "aspect",
    "brightness": "brightness",
    "contrast": "contrast",
    "saturation": "saturation",
    "erasing": "erasing",
}


def train_augment(image_size: int, options: Mapping[str, Any]) -> BatchTrainAugment:
    """The train augmentation that data options describe (the data module's, or those a checkpoint saved); an
    option not given takes its default."""
    chosen = {argument: options[option] for option, argument in AUGMENT_OPTIONS.items() if option in options}
    return BatchTrainAugment(image_size, **chosen)


class BatchTrainAugment(torch.nn.Module):
    """The train augmentation for a batch of cached uint8 images, each image with its own random parameters.

    Input: ``(B, 3, S, S)`` uint8 images squashed to ``S = source_size`` (``image_size`` in keras mode,
    ``train_source_size(image_size, zoom)`` in crop mode). The geometry of each image (keras: zoom ``zx``, ``zy``,
    shear, flip; crop: a ``RandomResizedCrop`` box, shear, flip) is composed into one affine map and applied by a
    single ``affine_grid`` + ``grid_sample`` (bilinear, edges repeated), then the optional colour jitter and erasing;
    all on whatever device the batch is on. torchvision's v2 transforms would draw one set of parameters for the
    whole batch (vision #8484), hence this module. Output: ``(B, 3, image_size, image_size)`` float in [0, 1].
    The module docstring says how each setting maps to Keras's.

    Args:
        image_size: the output side.
        zoom: Keras ``zoom_range``.
        shear: Keras ``shear_range``, in degrees.
        hflip: Keras ``horizontal_flip``.
        mode: ``keras`` (exact) or ``crop`` (crops inside the photo).
        aspect: crop mode's aspect range of the window (width / height); ``None``: ``(1 - zoom, 1 / (1 - zoom))``.
        brightness, contrast, saturation: colour jitter strengths, as torchvision ``ColorJitter``'s; 0 is off.
        erasing: probability of random erasing per image; 0 is off.
    """

    def __init__(
        self,
        image_size: int = 64,
        zoom: float = DEFAULT_ZOOM,
        shear: float = DEFAULT_SHEAR,
        hflip: bool = True,
        mode: str = "crop",
        aspect: tuple[float, float] | None = None,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        erasing: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in AUGMENT_MODES:
            raise ValueError(f"augment must be {' or '.join(AUGMENT_MODES)}, got {mode!r}")
        if aspect is not None and (mode != "crop" or not 0 < aspect[0] <= aspect[1]):
            raise ValueError(
                f"aspect must be (low, high) with 0 < low <= high, and only with augment=crop, got {aspect}"
            )
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= erasing <= 1.0:
            raise ValueError(f"erasing must be a probability in [0, 1], got {erasing}")
        self.image_size, self.mode, self.zoom = image_size, mode, zoom
        self.scale, self.ratio = zoom_to_crop(zoom)
        if aspect is not None:
            self.ratio = (float(aspect[0]), float(aspect[1]))
        self.shear = shear
        self.flip_p = 0.5 if hflip else 0.0
        self.jitter = (brightness, contrast, saturation)
        self.erasing = erasing

    @property
    def source_size(self) -> int:
        """Side of the square each photo is squashed to before this augmentation."""
        return self.image_size if self.mode == "keras" else train_source_size(self.image_size, self.zoom)

    def sample(
        self, batch: int, side: int, device: torch.device | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw per-image parameters: keras ``zx``, ``zy`` ``(B,)`` or crop ``boxes`` ``(B, 4)``; shear in degrees
        ``(B,)``; flips ``(B,)`` bool; and, where on, the jitter factors ``(B,)`` and erasing boxes and colours."""

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return torch.empty(batch, *shape, device=device).uniform_(low, high, generator=generator)

        if self.mode == "keras":
            params = {"zx": uniform(1 - self.zoom, 1 + self.zoom), "zy": uniform(1 - self.zoom, 1 + self.zoom)}
        else:
            params = {"boxes": sample_crop_boxes(batch, side, self.scale, self.ratio, device, generator)}
        params["shear"] = uniform(-self.shear, self.shear)
        params["flip"] = torch.rand(batch, device=device, generator=generator) < self.flip_p
        for name, strength in zip(("brightness", "contrast", "saturation"), self.jitter, strict=True):
            if strength:
                params[name] = uniform(1 - strength, 1 + strength)
        if self.erasing:
            size = self.image_size
            params["erase"] = torch.rand(batch, device=device, generator=generator) < self.erasing
            params["erase_boxes"] = sample_crop_boxes(batch, size, (0.02, 0.33), (0.3, 3.3), device, generator)
            params["erase_colour"] = uniform(0.0, 1.0, 3)
        return params

    @staticmethod
    def theta(params: dict[str, torch.Tensor], side: int) -> torch.Tensor:
        """Crop mode's affine maps ``(B, 2, 3)``, output to input coordinates (normalised, ``align_corners=False``)."""
        top, left, h, w = params["boxes"].unbind(1)
        batch = top.shape[0]
        # Output -> crop: flip x, then undo the shear (x' = x + tan(shear) * y about the centre).
        flip = 1.0 - 2.0 * params["flip"].float()
        shear = torch.tan(torch.deg2rad(params["shear"]))
        # Crop -> source: scale by the box's size and shift to its centre.
        sx, sy = w / side, h / side
        cx, cy = (2 * left + w) / side - 1.0, (2 * top + h) / side - 1.0
        theta = torch.zeros(batch, 2, 3, device=top.device)
        theta[:, 0, 0] = sx * flip
        theta[:, 0, 1] = sx * shear
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = sy
        theta[:, 1, 2] = cy
        return theta

    def geometry(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The affine part: uint8 or float ``(B, 3, S, S)`` in, float ``(B, 3, image_size, image_size)`` out, 0-255."""
        batch, _, side, _ = images.shape
        keras = self.mode == "keras"
        if keras:
            if side != self.image_size:
                raise ValueError(f"augment=keras works on the {self.image_size}-px image, got {side}-px images")
            theta = pixel_to_grid_theta(keras_matrix(params, side, side), side, side)
        else:
            theta = self.theta(params, side)
        # The parameters are drawn and composed on the CPU even for a GPU batch: two dozen ops on a few numbers
        # cost less there than as many GPU kernel launches. Only the (B, 2, 3) maps travel, without a wait.
        theta = host_to_device(theta, images.device)
        size = [batch, 3, self.image_size, self.image_size]
        grid = torch.nn.functional.affine_grid(theta, size, align_corners=keras)  # (B, 64, 64, 2)
        return torch.nn.functional.grid_sample(
            images.float(), grid, mode="bilinear", padding_mode="border", align_corners=keras
        )  # (B, 3, 64, 64)

    def colour(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Colour jitter and erasing on ``(B, 3, H, W)`` floats in [0, 1] (each only where switched on)."""
        device = images.device

        def factor(name: str) -> torch.Tensor:
            return host_to_device(params[name], device).view(-1, 1, 1, 1)

        if "brightness" in params:
            images = (images * factor("brightness")).clamp_(0.0, 1.0)
        if "contrast" in params:
            mean = grey(images).mean(dim=(1, 2, 3), keepdim=True)
            images = (mean + factor("contrast") * (images - mean)).clamp_(0.0, 1.0)
        if "saturation" in params:
            images = (grey(images) + factor("saturation") * (images - grey(images))).clamp_(0.0, 1.0)
        if "erase" in params:
            top, left, h, w = (host_to_device(v, device).view(-1, 1, 1, 1) for v in params["erase_boxes"].unbind(1))
            rows = torch.arange(images.shape[2], device=device).view(1, 1, -1, 1)
            cols = torch.arange(images.shape[3], device=device).view(1, 1, 1, -1)
            inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
            inside &= host_to_device(params["erase"], device).view(-1, 1, 1, 1)  # (B, 1, H, W)
            colour = host_to_device(params["erase_colour"], device).view(-1, 3, 1, 1)
            images = torch.where(inside, colour, images)
        return images

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        params = self.sample(images.shape[0], images.shape[-1], generator=generator)
        images = self.geometry(images, params).div_(255.0).clamp_(0.0, 1.0)  # float rounding may pass 1
        return self.colour(images, params)  # (B, 3, 64, 64)


def grey(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` luma of ``(B, 3, H, W)`` RGB, with torchvision's ``rgb_to_grayscale`` weights."""
    weights = torch.tensor([0.2989, 0.587, 0.114], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)
