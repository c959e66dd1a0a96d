"""``predict`` on onnxruntime, without Lightning (nor torch, when the graph is an ``.onnx`` file or cached): the
same options, inputs, CSV and terminal report as ``predict`` through Lightning, in a fraction of its start-up.

:func:`route` reads ``predict``'s arguments and says whether this path takes them: always for an ``.onnx`` model or
``--runtime onnx`` (an option it cannot honour is then an error naming it), and with ``--runtime auto`` (the
default) for a checkpoint on a machine without a GPU when every option is one it honours. Everything else (a GPU,
DDP, ``--config``, ``--model.*`` and most ``--trainer.*`` options, ``--runtime pytorch``) stays with Lightning.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from catdog_pl.core.errors import InputError
from catdog_pl.core.labels import check_threshold
from catdog_pl.data.images import DEFAULT_MAX_PIXELS
from catdog_pl.data.listing import expand_inputs
from catdog_pl.inference.decode import PhotoInputs, decoded_batches
from catdog_pl.inference.predictor import DECODE_THREADS, Predictor
from catdog_pl.inference.rows import collect, make_predictions, summary, write_csv
from catdog_pl.inference.runtime import check_runtime, gpu_present, graph_runtime_installed, is_graph

#: Photos a batch on the graph (measured on 2 cores: 32 as fast as 256, with less memory; benchmarks/README.md).
BATCH_SIZE = 32
#: Options this path honours -> their meaning; values as LightningCLI writes them.
OPTIONS = {
    "--ckpt_path": "the checkpoint or .onnx file",
    "--runtime": "auto, onnx or pytorch",
    "--data.predict_path": "a file, a folder or a glob",
    "--data.predict_batch_size": "photos a batch",
    "--data.num_workers": "decoding threads beside the network",
    "--data.max_image_pixels": "larger photos are refused",
    "--prediction.output": "the CSV",
    "--prediction.threshold": "a binary model's threshold",
    "--prediction.show": "rows printed",
    "--prediction.top_k": "the CSV's classes a photo",
    "--trainer.logger": "false: no run folder",
    "--trainer.default_root_dir": "where lightning_logs/ goes",
    "--trainer.enable_progress_bar": "a bar while predicting",
    "--trainer.enable_model_summary": "(no summary to print)",
    "--trainer.accelerator": "cpu or auto",
    "--trainer.devices": "1 or auto",
    "--trainer.num_nodes": "1",
    "--seed_everything": "(nothing random in predict)",
}
#: LightningCLI's spellings of "none" and "off".
NONE = ("null", "None")
FALSE = ("false", "False", "0", *NONE)


@dataclass
class GraphPredict:
    """``predict``'s options as this path reads them."""

    ckpt_path: str = ""
    runtime: str = "auto"
    values: dict[str, str] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)  # options only Lightning's path honours

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)


def parse(args: Sequence[str]) -> GraphPredict:
    """``--name value`` and ``--name=value`` pairs; anything else is kept as foreign."""
    options = GraphPredict()
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
            i += 1
        elif token.startswith("--") and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            name, value = token, tokens[i + 1]
            i += 2
        else:
            options.foreign.append(token)
            i += 1
            continue
        if name in OPTIONS:
            options.values[name] = value
        else:
            options.foreign.append(name)
    options.ckpt_path = options.values.get("--ckpt_path", "")
    options.runtime = check_runtime(options.values.get("--runtime", "auto"))
    accelerator = options.get("--trainer.accelerator", "auto")
    if accelerator not in ("cpu", "auto") or (accelerator == "auto" and gpu_present()):
        options.foreign.append(f"--trainer.accelerator {accelerator}")
    for name in ("--trainer.devices", "--trainer.num_nodes"):
        if options.get(name, "1") not in ("1", "auto", "[0]"):
            options.foreign.append(f"{name} {options.get(name)}")
    return options


def route(args: Sequence[str]) -> GraphPredict | None:
    """The options when ``predict`` runs here (onnxruntime), ``None`` when it stays with Lightning (PyTorch); an
    ``.onnx`` model or ``--runtime onnx`` with an option this path cannot honour is an :class:`InputError`."""
    options = parse(args)
    wants_graph = options.runtime == "onnx" or (options.ckpt_path and is_graph(options.ckpt_path))
    if wants_graph:
        if options.runtime == "pytorch":
            raise InputError(f"{options.ckpt_path}: an ONNX file runs on onnxruntime; give its checkpoint for pytorch")
        if options.foreign:
            raise InputError(
                f"{options.foreign[0]}: not an option of predict on onnxruntime (it takes "
                f"{', '.join(OPTIONS)}); use a checkpoint with --runtime pytorch for the others"
            )
        return options
    if options.runtime == "pytorch" or options.foreign or not options.ckpt_path or not graph_runtime_installed():
        return None
    return options


def default_output(options: GraphPredict) -> Path:
    """Where Lightning's ``predict`` writes its CSV: the next ``lightning_logs/version_N/`` with a logger (the
    default), else the working folder."""
    root = Path(options.get("--trainer.default_root_dir") or ".")
    if options.get("--trainer.logger") in FALSE:
        return root / "predictions.csv"
    logs = root / "lightning_logs"
    versions = [int(p.name[8:]) for p in logs.glob("version_*") if p.name[8:].isdigit()] if logs.is_dir() else []
    return logs / f"version_{max(versions, default=-1) + 1}" / "predictions.csv"


def run(options: GraphPredict) -> Path:
    """Label the photos and write the CSV; prints the table and returns the CSV's path."""
    predict_path = options.get("--data.predict_path")
    if not predict_path:
        raise InputError("predict needs images: pass --data.predict_path <file | folder | glob>")
    threshold = options.get("--prediction.threshold")
    try:
        threshold = None if threshold in (None, *NONE) else check_threshold(float(threshold))
    except ValueError as error:
        raise InputError(f"--prediction.threshold {threshold}: {error}") from None
    predictor = Predictor.from_checkpoint(options.ckpt_path, threshold=threshold, runtime="onnx")
    inputs = PhotoInputs(
        expand_inputs(predict_path),
        predictor.image_size,
        predictor.interpolation,
        int(options.get("--data.max_image_pixels") or DEFAULT_MAX_PIXELS),
    )
    batch_size = int(options.get("--data.predict_batch_size") or BATCH_SIZE)
    workers = options.get("--data.num_workers")
    threads = DECODE_THREADS if workers in (None, *NONE) else int(workers)
    progress = options.get("--trainer.enable_progress_bar", "true") not in FALSE and sys.stderr.isatty()
    probabilities: dict[int, list[float]] = {}
    errors: dict[int, str] = {}
    batches = decoded_batches(inputs, batch_size, threads)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(inputs) // batch_size), desc="Predicting", leave=False)
    for indices, images, batch_errors in batches:
        collect(probabilities, errors, indices, predictor.runner(images), batch_errors)
    rows = make_predictions(inputs, probabilities, errors, predictor.classes)
    top_k = options.get("--prediction.top_k")
    output = options.get("--prediction.output")
    output = Path(output) if output not in (None, *NONE) else default_output(options)
    path = write_csv(rows, output, predictor.classes, None if top_k in (None, *NONE) else int(top_k))
    print(summary(rows, int(options.get("--prediction.show") or 20), predictor.classes, path), flush=True)
    if rows and not any(row.ok for row in rows):
        raise SystemExit(f"catdog_pl: error: none of the {len(rows)} images could be predicted")
    return path


def main(args: Sequence[str]) -> bool:
    """Run ``predict`` here if it belongs here; ``False`` hands it to Lightning."""
    options = route(args)
    if options is None:
        return False
    run(options)
    return True
