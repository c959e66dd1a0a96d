"""The resize filters a backbone's preprocessing may name, as Pillow's filters."""

from PIL import Image

#: Filter name -> Pillow's filter; torchvision's ``InterpolationMode`` takes the same names.
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
