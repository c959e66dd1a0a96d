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


def build_eval_transform(image_size: int = 64) -> v2.Compose:
    """Squash to ``image_size`` x ``image_size`` and scale to [0, 1]; used by validate, test and predict alike."""
    return v2.Compose(
        [
            v2.Resize((image_size, image_size), antialias=True),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def build_train_transform(
    image_size: int = 64, zoom: float = DEFAULT_ZOOM, shear: float = DEFAULT_SHEAR, hflip: bool = True
) -> v2.Compose:
    """The original's augmentation, one PIL image at a time (see the module docstring for the mapping)."""
    scale, ratio = zoom_to_crop(zoom)
    source = train_source_size(image_size, zoom)
    return v2.Compose(
        [
            v2.Resize((source, source), antialias=True),
            v2.RandomResizedCrop(image_size, scale=scale, ratio=ratio, antialias=True),
            v2.RandomAffine(degrees=0.0, shear=shear),
            v2.RandomHorizontalFlip(0.5 if hflip else 0.0),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
