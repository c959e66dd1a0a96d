"""The pictures of a run, drawn once with PIL as ``(H, W, 3)`` uint8 arrays: TensorBoard shows them during
training (:mod:`catdog_pl.training.visualize`) and ``report`` saves them as PNGs (:mod:`catdog_pl.reporting.report`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def to_uint8_images(images: torch.Tensor) -> list[np.ndarray]:
    """``(B, 3, H, W)`` floats in [0, 1] -> ``B`` arrays ``(H, W, 3)`` uint8."""
    pixels = (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return list(pixels)


def captioned_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], tile: int | None = None, columns: int = 8
) -> np.ndarray:
    """Tiles of ``images`` (each fitted into a ``tile`` x ``tile`` square, 2x the largest side by default) with
    a caption under each, in rows of ``columns``; ``(H, W, 3)`` uint8."""
    if not images:
        return np.full((8, 8, 3), 255, dtype=np.uint8)
    tile = tile or 2 * max(max(array.shape[:2]) for array in images)
    lines = max(caption.count("\n") + 1 for caption in captions)
    cell_w, cell_h, pad = tile, tile + 14 * lines + 4, 4
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + pad) + pad, rows * (cell_h + pad) + pad), (200, 200, 200))
    draw, font = ImageDraw.Draw(sheet), _font(11)
    for i, (array, caption) in enumerate(zip(images, captions, strict=True)):
        img = Image.fromarray(array)
        scale = tile / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.NEAREST
        )
        x, y = pad + (i % columns) * (cell_w + pad), pad + (i // columns) * (cell_h + pad)
        sheet.paste(Image.new("RGB", (cell_w, cell_h), "white"), (x, y))
        sheet.paste(img, (x + (tile - img.width) // 2, y + (tile - img.height) // 2))
        draw.multiline_text((x + 3, y + tile + 2), caption, fill="black", font=font, spacing=2)
    return np.asarray(sheet)


def mistake_caption(probabilities: Sequence[float], target: int, predicted: int, labels: Sequence[str]) -> str:
    """``true dog / pred cat 0.88`` for one misclassified image: the true label, the predicted one and its
    probability, and the true label's."""
    return (
        f"true {labels[int(target)]} {float(probabilities[int(target)]):.2f}\n"
        f"pred {labels[int(predicted)]} {float(probabilities[int(predicted)]):.2f}"
    )


def confusion_image(counts: torch.Tensor | np.ndarray, labels: Sequence[str], title: str = "") -> np.ndarray:
    """A C x C confusion matrix (rows: true class, columns: predicted) as a heat map of the row shares (each true
    class's recall on the diagonal), each cell with its count and, where it fits, its share of the row."""
    counts = np.asarray(counts)
    size = len(labels)
    cell = int(max(26, min(110, 640 // size)))
    margin = int(min(160, max(90, 30 + 7 * max(len(label) for label in labels))))
    img = Image.new("RGB", (margin + size * cell + 10, margin + size * cell + 10), "white")
    draw = ImageDraw.Draw(img)
    font, big = _font(max(9, min(13, cell // 4))), _font(max(10, min(18, cell // 3)))
    for true in range(size):
        total = max(int(counts[true].sum()), 1)
        for pred in range(size):
            value = int(counts[true, pred])
            share = value / total
            shade = int(255 - 200 * share)
            colour = (shade, shade, 255) if true == pred else (255, shade, shade)
            x0, y0 = margin + pred * cell, margin + true * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=colour, outline=(150, 150, 150))
            centre = (x0 + cell // 2, y0 + cell // 2)
            if cell >= 60:
                draw.text(centre, str(value), fill="black", font=big, anchor="mb")
                draw.text((centre[0], centre[1] + 4), f"{share:.0%}", fill="black", font=font, anchor="mt")
            elif value:
                draw.text(centre, str(value), fill="black", font=font, anchor="mm")
    for i, label in enumerate(labels):
        draw.text((margin + i * cell + cell // 2, margin - 6), label[:12], fill="black", font=font, anchor="ms")
        draw.text((margin - 6, margin + i * cell + cell // 2), label, fill="black", font=font, anchor="rm")
    draw.text((margin + size * cell // 2, 22), "predicted", fill="black", font=font, anchor="ms")
    draw.text((4, margin - 6), "true", fill="black", font=font, anchor="ls")
    draw.text((4, 4), title, fill="black", font=font)
    return np.asarray(img)


def reliability_image(bins: Sequence[tuple[float, float, int]], ece: float, title: str = "") -> np.ndarray:
    """The reliability diagram: each confidence bin's accuracy against its mean confidence (a calibrated model's
    points lie on the diagonal), dots sized by the bin's images, with the expected calibration error."""
    side, margin = 320, 44
    img = Image.new("RGB", (side + margin + 16, side + margin + 30), "white")
    draw, font = ImageDraw.Draw(img), _font(11)

    def xy(confidence: float, accuracy: float) -> tuple[float, float]:
        return margin + confidence * side, 20 + (1 - accuracy) * side

    draw.rectangle([*xy(0, 1), *xy(1, 0)], outline=(120, 120, 120))
    draw.line([*xy(0, 0), *xy(1, 1)], fill=(160, 160, 160), width=1)
    for tick in (0.0, 0.5, 1.0):
        draw.text((xy(tick, 0)[0], xy(tick, 0)[1] + 4), f"{tick:g}", fill="black", font=font, anchor="mt")
        draw.text((xy(0, tick)[0] - 4, xy(0, tick)[1]), f"{tick:g}", fill="black", font=font, anchor="rm")
    peak = max((count for _, _, count in bins), default=1)
    previous = None
    for confidence, accuracy, count in bins:
        x, y = xy(confidence, accuracy)
        if previous is not None:
            draw.line([*previous, x, y], fill=(60, 90, 200), width=2)
        radius = 2 + 6 * (count / peak) ** 0.5
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(60, 90, 200))
        previous = (x, y)
    draw.text((margin + side // 2, side + 40), "confidence (probability of the predicted label)", fill="black",
              font=font, anchor="mt")  # fmt: skip
    draw.text((margin + 6, 24), f"accuracy; ECE {ece:.3f}", fill="black", font=font)
    draw.text((4, 4), title, fill="black", font=font)
    return np.asarray(img)


def counts_markdown(counts: torch.Tensor | np.ndarray, labels: Sequence[str]) -> str:
    """The confusion counts as a Markdown table (rows: true class, columns: predicted)."""
    counts = np.asarray(counts)
    rows = ["| true \\\\ predicted | " + " | ".join(labels) + " |", "| --- " * (len(labels) + 1) + "|"]
    rows += [f"| {labels[i]} | " + " | ".join(str(int(v)) for v in counts[i]) + " |" for i in range(len(labels))]
    return "\n".join(rows)
