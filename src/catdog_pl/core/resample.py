"""The resize filters a backbone's preprocessing may name, as Pillow's filters."""

from PIL import Image

#: Filter name -> Pillow's filter; torchvision's ``InterpolationMode`` takes the same names. ``nearest`` is Keras's
#: ``load_img`` default (one source pixel per output pixel, no antialiasing), what the Keras original trained on.
RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
