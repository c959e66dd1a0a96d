"""The preprocessing each backbone expects: input size, mean/std and resize filter (the original's 64 px and 0..1
scaling, or timm's data config), with whatever the configuration sets instead."""

from __future__ import annotations

from dataclasses import dataclass

from catdog_pl.core.resample import RESAMPLE


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the network's input: squashed to ``image_size`` x ``image_size`` with
    ``interpolation``, scaled to [0, 1], then ``(x - mean) / std`` inside the model."""

    image_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"


def default_preprocessing(backbone: str) -> Preprocessing:
    """The backbone's own preprocessing: the original's 64 px and 0..1 scaling, or timm's data config."""
    if backbone == "keras_cnn":
        return Preprocessing(64)  # Keras target_size=(64, 64), rescale=1/255
    if backbone == "scratch_resnet":
        return Preprocessing(80, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(backbone)
    if config is None:
        raise ValueError(f"unknown backbone {backbone!r}: use keras_cnn, scratch_resnet or a timm model name")
    interpolation = config.interpolation if config.interpolation in RESAMPLE else "bilinear"
    return Preprocessing(int(config.input_size[-1]), tuple(config.mean), tuple(config.std), interpolation)


def resolve_preprocessing(
    backbone: str,
    image_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    interpolation: str | None = None,
) -> Preprocessing:
    """The backbone's preprocessing with whatever the configuration sets instead."""
    base = default_preprocessing(backbone)
    if interpolation is not None and interpolation not in RESAMPLE:
        raise ValueError(f"interpolation must be {' or '.join(RESAMPLE)}, got {interpolation!r}")
    return Preprocessing(
        int(image_size or base.image_size),
        tuple(mean) if mean is not None else base.mean,
        tuple(std) if std is not None else base.std,
        interpolation or base.interpolation,
    )
