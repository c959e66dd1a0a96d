"""Train and eval transforms: the Keras ``ImageDataGenerator`` of the original, translated to torchvision.

The original::

    ImageDataGenerator(rescale=1/255, shear_range=0.2, zoom_range=0.2, horizontal_flip=True)
    flow_from_directory(..., target_size=(64, 64))

How each argument maps here (``image_size = 64``):

- ``target_size=(64, 64)``: Keras squashes every photo to 64x64 (the aspect ratio is not kept) *before* it
  augments. Eval does the same with ``Resize((64, 64))`` (antialiased bilinear, where Keras used nearest).
- ``rescale=1/255``: ``ToDtype(float32, scale=True)``, pixels in [0, 1]. Eval does nothing else.
- ``zoom_range=0.2``: Keras draws ``zx`` and ``zy`` independently from [0.8, 1.2] and samples a source window
  of ``zx`` by ``zy`` times the image. Below 1 that window is a crop inside the image; above 1 it reaches past
  the border, which Keras fills by repeating the edge pixels. ``RandomResizedCrop`` covers the crops inside the
  image: the window's area fraction ``zx * zy`` lies in [0.8², 1] = [0.64, 1] and its aspect ``zx / zy`` in
  [0.8, 1.25], so ``scale=(0.64, 1.0), ratio=(0.8, 1.25)``. These ranges cover every in-image Keras crop; since
  ``RandomResizedCrop`` draws area and aspect independently, a side can also reach ``sqrt(0.64 * 0.8)`` = 0.72
  when the other is about 0.89 (same area and aspect bounds as Keras, a slightly wider set of sides). To keep
  the crop sharp, train first squashes the photo to ``image_size / 0.8`` = 80 px, so that a 0.8 x 0.8 crop is
  taken at the output's resolution. The zoom-outs with smeared borders are not reproduced.
- ``shear_range=0.2``: Keras reads it as an angle in **degrees** (``apply_affine_transform`` calls
  ``np.deg2rad(shear)``), so the faithful equivalent is ``RandomAffine(degrees=0, shear=0.2)``: a shear of at most
  0.2 degrees, next to nothing, which is what the original really did. It is a parameter.
- ``horizontal_flip=True``: ``RandomHorizontalFlip(0.5)``.
"""

from __future__ import annotations

import math

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


def build_train_transform(
    image_size: int = 64,
    zoom: float = DEFAULT_ZOOM,
    shear: float = DEFAULT_SHEAR,
    hflip: bool = True,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """The original's augmentation, one PIL image at a time (see the module docstring for the mapping)."""
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


class BatchTrainAugment(torch.nn.Module):
    """The train transform for a batch of cached, pre-squashed uint8 images, with per-image random parameters.

    Input: ``(B, 3, S, S)`` uint8 images squashed to ``S = train_source_size(image_size, zoom)``, i.e. the first
    step of :func:`build_train_transform`. Each image draws its own crop (``RandomResizedCrop``'s distribution),
    shear angle (uniform in ``[-shear, shear]`` degrees, as ``RandomAffine``) and flip (p = 0.5); the three are
    composed into one affine map and applied by a single ``affine_grid`` + ``grid_sample`` (bilinear), on
    whatever device the batch is on. torchvision's v2 transforms would draw one set of parameters for the whole
    batch (vision #8484), hence this module. Output: ``(B, 3, image_size, image_size)`` float in [0, 1].
    """

    def __init__(
        self, image_size: int = 64, zoom: float = DEFAULT_ZOOM, shear: float = DEFAULT_SHEAR, hflip: bool = True
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.scale, self.ratio = zoom_to_crop(zoom)
        self.shear = shear
        self.flip_p = 0.5 if hflip else 0.0

    def sample(
        self, batch: int, side: int, device: torch.device | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw per-image parameters: crop boxes ``(B, 4)``, shear in degrees ``(B,)``, flips ``(B,)`` bool."""
        return {
            "boxes": sample_crop_boxes(batch, side, self.scale, self.ratio, device, generator),
            "shear": torch.empty(batch, device=device).uniform_(-self.shear, self.shear, generator=generator),
            "flip": torch.rand(batch, device=device, generator=generator) < self.flip_p,
        }

    @staticmethod
    def theta(params: dict[str, torch.Tensor], side: int) -> torch.Tensor:
        """Affine maps ``(B, 2, 3)`` from output to input coordinates (normalised, ``align_corners=False``)."""
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

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, _, side, _ = images.shape
        # The parameters are drawn and composed on the CPU even for a GPU batch: two dozen ops on a few numbers
        # cost less there than as many GPU kernel launches. Only the (B, 2, 3) maps travel, without a wait.
        theta = host_to_device(self.theta(self.sample(batch, side, generator=generator), side), images.device)
        grid = torch.nn.functional.affine_grid(
            theta, [batch, 3, self.image_size, self.image_size], align_corners=False
        )  # (B, 64, 64, 2)
        out = torch.nn.functional.grid_sample(
            images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        return out.div_(255.0)  # (B, 3, 64, 64)
