"""The pictures of a run, drawn once with PIL as ``(H, W, 3)`` uint8 arrays: TensorBoard shows them during
training (:mod:`catdog_pl.training.visualize`) and ``report`` saves them as PNGs (:mod:`catdog_pl.reporting.report`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from catdog_pl.core.labels import label_for, label_of, probability_name


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


def mistake_caption(probability: float, target: int, class_names: Sequence[str], threshold: float) -> str:
    """``true dog / pred cat / p_dog 0.12`` for one misclassified image."""
    return (
        f"true {label_of(class_names[int(target)])}\npred {label_for(probability, class_names, threshold)}\n"
        f"{probability_name(class_names)} {probability:.2f}"
    )


def confusion_image(counts: torch.Tensor | np.ndarray, class_names: Sequence[str], title: str = "") -> np.ndarray:
    """A 2x2 confusion matrix (rows: true class, columns: predicted) as a heat map with counts and row shares."""
    counts = np.asarray(counts)
    cell, margin = 110, 110
    img = Image.new("RGB", (margin + 2 * cell + 10, margin + 2 * cell + 10), "white")
    draw, font = ImageDraw.Draw(img), _font(13)
    peak = max(int(counts.max()), 1)
    for true in range(2):
        for pred in range(2):
            value = int(counts[true, pred])
            shade = int(255 - 180 * value / peak)
            colour = (shade, shade, 255) if true == pred else (255, shade, shade)
            x0, y0 = margin + pred * cell, margin + true * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=colour, outline=(120, 120, 120))
            share = value / max(int(counts[true].sum()), 1)
            centre = (x0 + cell // 2, y0 + cell // 2)
            draw.text(centre, str(value), fill="black", font=_font(18), anchor="mb")
            draw.text((centre[0], centre[1] + 4), f"{share:.0%}", fill="black", font=font, anchor="mt")
    for i, name in enumerate(class_names):
        draw.text((margin + i * cell + cell // 2, margin - 8), label_of(name), fill="black", font=font, anchor="ms")
        draw.text((margin - 8, margin + i * cell + cell // 2), label_of(name), fill="black", font=font, anchor="rm")
    draw.text((margin + cell, margin - 30), "predicted", fill="black", font=font, anchor="ms")
    draw.text((8, margin + cell), "true", fill="black", font=font, anchor="lm")
    draw.text((8, 8), title, fill="black", font=font)
    return np.asarray(img)


def counts_markdown(counts: torch.Tensor | np.ndarray, class_names: Sequence[str]) -> str:
    """The confusion counts as a Markdown table."""
    counts = np.asarray(counts)
    labels = [label_of(name) for name in class_names]
    rows = [f"| true \\\\ predicted | {labels[0]} | {labels[1]} |", "| --- | --- | --- |"]
    rows += [f"| {labels[i]} | {counts[i, 0]} | {counts[i, 1]} |" for i in range(2)]
    return "\n".join(rows)
