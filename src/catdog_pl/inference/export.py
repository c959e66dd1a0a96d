"""``python -m catdog_pl export``: a checkpoint as one self-contained ONNX file.

The graph takes ``image``, uint8 ``(N, S, S, 3)`` RGB photos already decoded and squashed (the recipe is in the
file's metadata under ``resize``), and gives ``probabilities``, float32 ``(N, C)``; the scaling to [0, 1] and the
normalisation are inside it. The metadata also holds the classes, their display ``labels`` and the ``decision``
rule (``{"rule": "threshold", "class": 1, "threshold": 0.5}`` for a binary model, ``{"rule": "argmax"}`` else),
so that a client labels photos from the file alone.

Exported as timm's ``timm/utils/onnx.py`` does: traced with a batch of 2 (batch 1 would be specialised), the batch
axis dynamic, exporter and opset named explicitly (torch >= 2.9 changed the default exporter), fp32, then checked
with ``onnx.checker``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from catdog_pl.inference.runners import ModelCard, ProbabilityHead, load_predictor

#: The ONNX opset written: 18 is the lowest the torch.export-based exporter targets, and onnxruntime >= 1.14 runs it.
OPSET = 18
#: Batch of the example traced; >= 2 keeps the batch axis symbolic (timm traces with 2 for the same reason).
TRACE_BATCH = 2


def export_onnx(ckpt_path: str | os.PathLike, output: str | os.PathLike, opset: int = OPSET) -> ModelCard:
    """Write ``output`` (atomically) from the checkpoint ``ckpt_path``; returns the card stored in its metadata."""
    import onnx  # the optional [onnx] extra, with onnxscript for the exporter

    predictor, card = load_predictor(ckpt_path)
    head = ProbabilityHead(predictor.model).float().eval()
    size = card.image_size
    example = torch.randint(
        0, 256, (TRACE_BATCH, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        traced = Path(tmp) / "traced.onnx"
        torch.onnx.export(
            head,
            (example,),
            traced,
            input_names=["image"],
            output_names=["probabilities"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: "batch"},),
            external_data=False,  # one file: the weights are a few MB
            optimize=True,
            verbose=False,
        )
        model = onnx.load(traced)
        for key, value in card.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
        model.doc_string = f"catdog_pl {card.version}: {card.backbone}, classes {list(card.class_names)}"
        onnx.checker.check_model(model, full_check=True)
        final = Path(tmp) / "model.onnx"
        onnx.save(model, final)
        os.replace(final, output)
    return card


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catdog_pl export",
        description="Export a checkpoint to a self-contained ONNX file: uint8 (N, S, S, 3) RGB photos in, "
        "float32 (N, C) class probabilities out; classes, labels, the decision rule and the resize recipe in its "
        "metadata.",
    )
    parser.add_argument("--ckpt_path", required=True, help="a catdog_pl checkpoint (.ckpt)")
    parser.add_argument("--output", default="model.onnx", help="the ONNX file to write (default: model.onnx)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default: {OPSET})")
    options = parser.parse_args(args)
    card = export_onnx(options.ckpt_path, options.output, options.opset)
    accuracy = (
        f"test accuracy {card.test_acc:.4f}" if card.test_acc is not None
        else f"last validation accuracy {card.val_acc:.4f}" if card.val_acc is not None
        else "accuracy unknown"
    )  # fmt: skip
    print(
        f"{options.output}: {card.backbone}, input image uint8 (N, {card.image_size}, {card.image_size}, 3), "
        f"labels {card.labels}, {card.classes.rule()}, {accuracy}"
    )
