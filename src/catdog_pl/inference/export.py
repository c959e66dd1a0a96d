"""``python -m catdog_pl export``: a checkpoint as one self-contained ONNX file, fp32 or int8.

The graph takes ``image``, uint8 ``(N, S, S, 3)`` RGB photos already decoded and squashed (the recipe is in the
file's metadata under ``resize``), and gives ``probabilities``, float32 ``(N, C)``; the scaling to [0, 1] and the
normalisation are inside it. The metadata also holds the classes, their display ``labels`` and the ``decision``
rule (``{"rule": "threshold", "class": 1, "threshold": 0.5}`` for a binary model, ``{"rule": "argmax"}`` else),
so that a client labels photos from the file alone.

Exported as timm's ``timm/utils/onnx.py`` does: traced with a batch of 2 (batch 1 would be specialised), the batch
axis dynamic, exporter and opset named explicitly (torch >= 2.9 changed the default exporter), fp32, then checked
with ``onnx.checker``.

``--quantize int8`` then quantizes it with onnxruntime's own tools (``onnxruntime/quantization/quantize.py``):
:func:`quant_pre_process`, then :func:`quantize_static` in QDQ format with per-channel int8 weights and uint8
activations, calibrated on photos drawn from the checkpoint's training split. Before the file is written, both
graphs label the validation split: their accuracies and the share of equal labels go into the metadata
(``quantization``), and a file that loses more than ``--max_accuracy_drop`` points of accuracy is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from catdog_pl.core.errors import CatDogError, InputError, OutputError
from catdog_pl.data.images import prepare_image
from catdog_pl.data.layouts import read_layout
from catdog_pl.data.listing import is_image_file
from catdog_pl.inference.checkpoints import check_checkpoint
from catdog_pl.inference.decode import PhotoInputs, decoded_batches
from catdog_pl.inference.onnx import OnnxRunner
from catdog_pl.inference.runners import ModelCard, ProbabilityHead, load_runner

#: The ONNX opset written: 18 is the lowest the torch.export-based exporter targets, and onnxruntime >= 1.14 runs it.
OPSET = 18
#: Batch of the example traced; >= 2 keeps the batch axis symbolic (timm traces with 2 for the same reason).
TRACE_BATCH = 2
#: Training photos the int8 ranges are calibrated on, and the seed that draws them.
CALIBRATION_PHOTOS = 64
CALIBRATION_SEED = 0
#: The most accuracy, in points, that an int8 file may lose against the float graph on the validation split.
MAX_ACCURACY_DROP = 0.5


class AccuracyDropError(CatDogError, ValueError):
    """A quantized graph lost more accuracy than allowed; the message has the figures."""


def export_onnx(
    ckpt_path: str | os.PathLike, output: str | os.PathLike, opset: int = OPSET, source: dict[str, str] | None = None
) -> ModelCard:
    """Write ``output`` (atomically) from the checkpoint ``ckpt_path``; returns the card stored in its metadata.
    ``source`` (what identifies the checkpoint, for the graph cache) goes into the metadata too."""
    import onnx  # the optional [onnx] extra, with onnxscript for the exporter

    runner, card = load_runner(ckpt_path)
    head = ProbabilityHead(runner.model).float().eval()
    size = card.image_size
    example = torch.randint(
        0, 256, (TRACE_BATCH, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.TemporaryDirectory(dir=output.parent)
    except OSError as error:
        raise OutputError(f"{output}: cannot write the ONNX file ({error.strerror or error})") from None
    with tmp:
        traced = Path(tmp.name) / "traced.onnx"
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
        for key, value in {**card.to_metadata(), **(source or {})}.items():
            model.metadata_props.add(key=key, value=value)
        model.doc_string = f"catdog_pl {card.version}: {card.backbone}, classes {list(card.class_names)}"
        onnx.checker.check_model(model, full_check=True)
        final = Path(tmp.name) / "model.onnx"
        onnx.save(model, final)
        try:
            os.replace(final, output)
        except OSError as error:
            raise OutputError(f"{output}: cannot write the ONNX file ({error.strerror or error})") from None
    return card


def data_splits(ckpt_path: str | os.PathLike, data_dir: str | os.PathLike | None) -> tuple[Path, object]:
    """The data folder (``data_dir``, else the checkpoint's own) and its layout, split as the checkpoint's fit split
    it, so that the validation photos are held-out ones."""
    saved = check_checkpoint(ckpt_path).get("datamodule_hyper_parameters") or {}
    folder = Path(data_dir) if data_dir is not None else Path(saved["data_dir"]) if saved.get("data_dir") else None
    if folder is None or not folder.exists():
        where = f"the checkpoint's data_dir {folder} does not exist here" if folder else "the checkpoint names none"
        raise InputError(f"--data_dir: int8 calibration needs the training photos ({where}); pass --data_dir")
    split = {key: saved[key] for key in ("val_split", "test_split", "seed") if key in saved}
    return folder, read_layout(folder, is_image_file, **split)


class PhotoCalibration:
    """onnxruntime's ``CalibrationDataReader`` over ``count`` training photos drawn with ``seed``, in batches."""

    def __init__(self, paths: Sequence[str], card: ModelCard, count: int, seed: int, batch_size: int = 8) -> None:
        rng = np.random.default_rng(seed)
        picked = sorted(rng.choice(len(paths), size=min(count, len(paths)), replace=False).tolist())
        self.paths = [paths[i] for i in picked]
        self.card, self.batch_size = card, batch_size
        self.batches: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        size, resample = self.card.image_size, self.card.interpolation
        for start in range(0, len(self.paths), self.batch_size):
            chunk = self.paths[start : start + self.batch_size]
            yield {"image": np.stack([prepare_image(path, size, resample) for path in chunk])}  # (B, S, S, 3)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:
        self.batches = self._batches()


def label_indices(runner: OnnxRunner, inputs: PhotoInputs) -> tuple[np.ndarray, np.ndarray]:
    """(class index picked for each photo under the card's decision rule, which photos were readable)."""
    picked, readable = np.full(len(inputs), -1), np.zeros(len(inputs), bool)
    for indices, images, errors in decoded_batches(inputs, 32, threads=1):
        picked[indices] = runner.card.classes.decide(runner(images))
        readable[indices] = [not error for error in errors]
    return picked, readable


def compare_on(float_path: Path, int8_path: Path, samples: Sequence[tuple[str, int]]) -> dict:
    """Accuracy of the float and int8 graphs on ``samples`` (``(path, class index)``) and their share of equal
    labels."""
    float_runner, int8_runner = OnnxRunner(float_path), OnnxRunner(int8_path)
    card = float_runner.card
    inputs = PhotoInputs([path for path, _ in samples], card.image_size, card.interpolation)
    targets = np.array([target for _, target in samples])
    float_labels, readable = label_indices(float_runner, inputs)
    int8_labels, _ = label_indices(int8_runner, inputs)
    keep = readable
    return {
        "photos": int(keep.sum()),
        "float_accuracy": float(np.mean(float_labels[keep] == targets[keep])),
        "int8_accuracy": float(np.mean(int8_labels[keep] == targets[keep])),
        "equal_labels": float(np.mean(float_labels[keep] == int8_labels[keep])),
    }


def quantize_int8(
    ckpt_path: str | os.PathLike,
    output: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    calibration_photos: int = CALIBRATION_PHOTOS,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    opset: int = OPSET,
    seed: int = CALIBRATION_SEED,
    float_graph: str | os.PathLike | None = None,
) -> dict:
    """Write an int8 graph of ``ckpt_path`` to ``output``, or raise :class:`AccuracyDropError` (writing nothing)
    when its accuracy on the validation split is more than ``max_accuracy_drop`` points below the float graph's
    (``float_graph``, the checkpoint's fp32 export, is exported here when not given). Returns the figures, also stored
    in the file's metadata under ``quantization``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    folder, layout = data_splits(ckpt_path, data_dir)
    if not layout.train or not layout.val:
        raise InputError(f"{folder}: int8 needs training photos to calibrate on and validation photos to check on")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        float_path, prepared, quantized = (Path(tmp) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
        if float_graph is None:
            export_onnx(ckpt_path, float_path, opset)
        else:
            float_path = Path(float_graph)
        card = OnnxRunner(float_path).card
        quant_pre_process(float_path, prepared)
        reader = PhotoCalibration([path for path, _ in layout.train], card, calibration_photos, seed)
        quantize_static(
            prepared,
            quantized,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: without VNNI the x86 u8 x s8 kernels add pairs of products in 16 bits (VPMADDUBSW),
            # which saturates with full-range weights (onnxruntime's quantization docs); VNNI CPUs lose nothing.
            reduce_range=True,
            activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the x86 kernels' fast pairing
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        figures = compare_on(float_path, quantized, layout.val)
        drop = 100 * (figures["float_accuracy"] - figures["int8_accuracy"])
        figures.update(
            split=f"{folder} {layout.sources.get('val', 'val')}",
            calibration=f"{len(reader.paths)} training photos, seed {seed}, MinMax",
            method="onnxruntime quantize_static, QDQ, per-channel int8 weights (7-bit range), uint8 activations",
            accuracy_drop_points=drop,
            max_accuracy_drop_points=max_accuracy_drop,
        )
        summary = (
            f"validation accuracy float {figures['float_accuracy']:.4f}, int8 {figures['int8_accuracy']:.4f} "
            f"({drop:+.2f} points lost, bound {max_accuracy_drop:g}) on {figures['photos']} photos of "
            f"{figures['split']}; labels equal on {100 * figures['equal_labels']:.1f} %"
        )
        if drop > max_accuracy_drop + 1e-9:  # the points are differences of photo counts: no rounding noise
            raise AccuracyDropError(f"{output}: int8 graph not written: {summary} (--max_accuracy_drop)")
        model = onnx.load(quantized)
        for key, value in {"quantized": "int8", "quantization": json.dumps(figures)}.items():
            model.metadata_props.add(key=key, value=value)
        final = Path(tmp) / "model.onnx"
        onnx.save(model, final)
        os.replace(final, output)
    figures["summary"] = summary
    return figures


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catdog_pl export",
        description="Export a checkpoint to a self-contained ONNX file: uint8 (N, S, S, 3) RGB photos in, "
        "float32 (N, C) class probabilities out; classes, labels, the decision rule and the resize recipe in its "
        "metadata. With --quantize int8, an int8 graph checked against the float one on the validation split.",
    )
    parser.add_argument("--ckpt_path", required=True, help="a catdog_pl checkpoint (.ckpt)")
    parser.add_argument("--output", default="model.onnx", help="the ONNX file to write (default: model.onnx)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default: {OPSET})")
    parser.add_argument("--quantize", choices=("none", "int8"), default="none", help="int8: static quantization")
    parser.add_argument("--data_dir", help="int8: the photos to calibrate and check on (default: the checkpoint's)")
    parser.add_argument(
        "--calibration_photos", type=int, default=CALIBRATION_PHOTOS,
        help=f"int8: training photos to calibrate on (default: {CALIBRATION_PHOTOS})",
    )  # fmt: skip
    parser.add_argument(
        "--max_accuracy_drop", type=float, default=MAX_ACCURACY_DROP,
        help=f"int8: refuse a file that loses more validation accuracy, in points (default: {MAX_ACCURACY_DROP})",
    )  # fmt: skip
    options = parser.parse_args(args)
    if options.quantize == "int8":
        figures = quantize_int8(
            options.ckpt_path, options.output, options.data_dir, options.calibration_photos,
            options.max_accuracy_drop, options.opset,
        )  # fmt: skip
        print(f"{options.output}: int8, {figures['summary']}")
        return
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
