"""``python -m catdog_pl report``: a run as PNGs and a Markdown page, for people without TensorBoard.

    python -m catdog_pl report lightning_logs/version_0             # data_dir from the run's config.yaml
    python -m catdog_pl report path/to/last.ckpt --data_dir dataset --out reports/mine

Writes ``curves.png`` (loss, accuracy, AUROC, F1 and learning rate per epoch, from the run's ``metrics.csv``),
``confusion_matrix.png`` (C x C, counts and row shares), ``reliability.png`` (calibration, with the expected
calibration error), ``worst_mistakes.png`` (the test photos the checkpoint gets most wrong, with true label,
predicted label and probability), ``augmented_batch.png`` (what the training augmentation does), ``metrics.json``
(accuracy with its interval, per-class precision, recall, F1 and support, the most confused pairs) and ``index.md``
linking them. The test photos are those ``test`` evaluates: the layout split as the checkpoint's fit split it.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from catdog_pl.core.errors import InputError
from catdog_pl.core.parallel import available_cores
from catdog_pl.data.cache import decode_all
from catdog_pl.data.folders import is_image_file
from catdog_pl.data.images import load_rgb
from catdog_pl.data.layouts import Layout, read_layout
from catdog_pl.data.transforms import train_augment
from catdog_pl.evaluation.metrics import ClassificationMetrics, format_accuracy, image_losses, worst_mistakes
from catdog_pl.evaluation.pictures import (
    captioned_grid,
    confusion_image,
    mistake_caption,
    reliability_image,
    to_uint8_images,
)
from catdog_pl.inference.checkpoints import check_checkpoint
from catdog_pl.inference.predictor import Predictor

#: The folders of a run's ``metrics.csv`` files: ``metrics/`` from its first fit, ``metrics.N/`` from resumed ones.
CSV_FOLDER = re.compile(r"metrics(?:\.(\d+))?")
CURVES = (("loss", "loss"), ("acc", "accuracy"), ("auroc", "AUROC"), ("f1", "F1"))


def find_run(target: Path) -> tuple[Path | None, Path]:
    """(run folder or None, checkpoint) from a run folder or a checkpoint file."""
    if target.is_file():
        run = target.parent.parent if target.parent.name == "checkpoints" else None
        return run, target
    if target.is_dir():
        checkpoint = target / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            found = sorted((target / "checkpoints").glob("*.ckpt"))
            if not found:
                raise InputError(f"{target}: no checkpoints/*.ckpt in this run folder")
            checkpoint = found[-1]
        return target, checkpoint
    raise InputError(f"{target}: no such run folder or checkpoint")


def read_epochs(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every figure a run logged, per epoch: tag -> [(epoch, value)], the last value of each epoch kept.

    From the fits' ``metrics/metrics.csv``, ``metrics.1/metrics.csv``, ... (Lightning's ``CSVLogger``; a resumed fit
    writes the next), in order: each fit's epochs replace those from its first epoch on, which it ran again. From the
    TensorBoard event files for the epochs before the first CSV's (runs begun by catdog_pl 0.2, which wrote none).
    """
    found = {folder: CSV_FOLDER.fullmatch(folder.name) for folder in run.iterdir()} if run.is_dir() else {}
    folders = sorted((int(match[1] or 0), folder) for folder, match in found.items() if match)
    tables = [epoch_rows(list(csv.DictReader((folder / "metrics.csv").read_text().splitlines())))
              for _, folder in folders if (folder / "metrics.csv").is_file()]  # fmt: skip
    tables = [table for table in tables if table]
    if not tables or min(epoch for _, epoch, _ in tables[0]) > 0:
        tables.insert(0, epoch_rows(event_rows(run)))
    series: dict[str, dict[int, float]] = {}
    for table in tables:
        first = min(epoch for _, epoch, _ in table) if table else 0
        for values in series.values():
            for epoch in [epoch for epoch in values if epoch >= first]:
                del values[epoch]
        for tag, epoch, value in table:
            series.setdefault(tag, {})[epoch] = value
    return {tag: sorted(values.items()) for tag, values in series.items() if values}


def epoch_rows(rows: list[dict[str, str]]) -> list[tuple[str, int, float]]:
    """``metrics.csv`` rows as (tag, epoch, value); a row without an epoch (LearningRateMonitor logs none) takes that
    of the next row with one, its epoch's end."""
    marks = sorted((int(row["step"]), int(float(row["epoch"]))) for row in rows if row.get("epoch"))
    points = []
    for row in rows:
        epoch = row.get("epoch")
        if not epoch:
            at = bisect.bisect_left(marks, (int(row["step"]), -1))
            if at == len(marks):
                continue
            epoch = marks[at][1]
        points += [(tag, int(float(epoch)), float(value)) for tag, value in row.items()
                   if tag not in ("epoch", "step") and value]  # fmt: skip
    return points


def event_rows(run: Path) -> list[dict[str, str]]:
    """A run's TensorBoard scalars as ``metrics.csv`` rows: one per (step, tag), ``epoch`` as its own tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for events in sorted({path.parent for path in run.glob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            rows += [{"step": str(event.step), tag: str(event.value)} for event in accumulator.Scalars(tag)]
    return rows


def plot_curves(scalars: dict, output: Path) -> Path | None:
    from matplotlib.figure import Figure  # no pyplot: the process's matplotlib backend is left alone

    lr_tags = [tag for tag in scalars if tag.startswith("lr-")]
    panels = [(key, title) for key, title in CURVES if f"train/{key}" in scalars or f"val/{key}" in scalars]
    if not panels:
        return None
    columns = len(panels) + bool(lr_tags)
    fig = Figure(figsize=(4.2 * columns, 3.6))
    axes = np.atleast_1d(fig.subplots(1, columns))
    for ax, (key, title) in zip(axes, panels, strict=False):
        for stage, style in (("train", "-o"), ("val", "-s")):
            if points := scalars.get(f"{stage}/{key}"):
                ax.plot(*zip(*points, strict=True), style, markersize=3, label=stage)
        ax.set(title=title, xlabel="epoch", ylabel=title)
        ax.grid(alpha=0.3)
        ax.legend()
    if lr_tags:
        axes[-1].plot(*zip(*scalars[lr_tags[0]], strict=True), "-o", markersize=3)
        axes[-1].set(title="learning rate", xlabel="epoch", ylabel="learning rate")
        axes[-1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    return output


def save_png(array: np.ndarray, output: Path) -> Path:
    Image.fromarray(array).save(output)
    return output


def photo_thumbnails(paths: Sequence[str], side: int = 192) -> list[np.ndarray]:
    """The photos as they are on disk, each fitted into ``side`` x ``side`` (aspect kept)."""
    thumbnails = []
    for path in paths:
        img = load_rgb(path, min_size=side)
        img.thumbnail((side, side))
        thumbnails.append(np.asarray(img))
    return thumbnails


def augmented_batch(
    layout: Layout, predictor: Predictor, options: dict, count: int = 16
) -> tuple[list[np.ndarray], list[str]]:
    """Training photos as the network saw them (the augmentation of the checkpoint's data ``options``, at its input
    size), with their labels."""
    picks = np.random.default_rng(0).choice(len(layout.train), size=min(count, len(layout.train)), replace=False)
    samples = [layout.train[i] for i in picks]
    augment = train_augment(predictor.image_size, options)
    images, _ = decode_all(
        [path for path, _ in samples], augment.source_size, interpolation=predictor.interpolation, progress=False
    )
    augmented = augment(images, generator=torch.Generator().manual_seed(0))
    return to_uint8_images(augmented), [predictor.labels[target] for _, target in samples]


def evaluate(predictor: Predictor, samples: Sequence[tuple[str, int]]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(paths, targets, ``(N, C)`` probabilities) of the readable photos among ``samples``."""
    paths = [path for path, _ in samples]
    rows = predictor.predict_many(paths, num_workers=min(2, available_cores()))
    ok = [i for i, row in enumerate(rows) if row.ok]
    targets = torch.tensor([samples[i][1] for i in ok], dtype=torch.long)
    probs = torch.tensor([[rows[i].probabilities[label] for label in predictor.labels] for i in ok])
    return [paths[i] for i in ok], targets, probs.reshape(len(ok), len(predictor.labels))


def checkpoint_layout(saved: dict, data_dir: Path) -> Layout:
    """The layout of ``data_dir`` split as the checkpoint's fit split it (its ``saved`` data options), so that the
    report's test photos are ``test``'s, never training photos."""
    split = {key: saved[key] for key in ("val_split", "test_split", "seed") if key in saved}
    return read_layout(data_dir, is_image_file, **split)


def report(target: Path, out: Path | None = None, data_dir: Path | None = None, worst: int = 12) -> Path:
    """Write the report of a run folder or checkpoint into ``out``; return the Markdown page's path."""
    run, checkpoint = find_run(target)
    if data_dir is None and run is not None and (run / "config.yaml").is_file():
        data_dir = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["data_dir"])
    if data_dir is None:
        raise InputError(f"{target}: no run config.yaml to read data_dir from; pass --data_dir")
    out = out or Path("reports") / (run.name if run is not None else checkpoint.stem)
    out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_checkpoint(checkpoint)
    labels, classes = predictor.labels, predictor.classes
    saved = check_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}  # the fit's data options
    layout = checkpoint_layout(saved, data_dir)
    source = layout.sources["test"]
    sections = [f"# Report: {run or checkpoint}", "", f"Checkpoint `{checkpoint}`, test photos: `{data_dir}` {source}.",
                f"{layout.describe()}.", ""]  # fmt: skip

    scalars = read_epochs(run) if run is not None else {}
    if scalars:
        sections += ["## Last epoch", "", "| metric | train | val |", "| --- | --- | --- |"]
        for key, title in CURVES:
            values = [scalars.get(f"{stage}/{key}") for stage in ("train", "val")]
            sections.append(f"| {title} | " + " | ".join(f"{v[-1][1]:.3f}" if v else "" for v in values) + " |")
        if plot_curves(scalars, out / "curves.png"):
            sections += ["", "![training curves](curves.png)", ""]

    paths, targets, probs = evaluate(predictor, layout.test)
    metrics = ClassificationMetrics(classes)
    predicted = metrics.update(probs, targets, image_losses(probs, targets))
    summary = metrics.compute()
    if summary is None:
        raise InputError(f"{data_dir}: none of the {len(layout.test)} test photos could be read")
    accuracy = format_accuracy(summary.correct, summary.total)
    rule = f"at threshold {classes.threshold:g}" if classes.binary else "(the most probable class)"
    sections += ["## Test set", "", f"Accuracy **{accuracy}** (95 % Wilson interval) {rule}.", "",
                 "```", summary.report(), "```", ""]  # fmt: skip
    title = f"{len(paths)} test photos, accuracy {accuracy}"
    save_png(confusion_image(summary.counts, labels, title), out / "confusion_matrix.png")
    save_png(reliability_image(summary.reliability(), summary.ece, title), out / "reliability.png")
    (out / "metrics.json").write_text(summary.to_json(f"{data_dir} {source}"))
    sections += ["![confusion matrix](confusion_matrix.png)", "", "## Calibration", "",
                 f"Expected calibration error **{summary.ece:.3f}**: how far the probability of each predicted label "
                 "is from how often it is right (0 is perfectly calibrated).", "",
                 "![reliability diagram](reliability.png)", ""]  # fmt: skip
    ranked = worst_mistakes(probs, predicted, targets, worst).tolist()
    if ranked:
        rows = [(paths[i], probs[i], int(predicted[i]), int(targets[i])) for i in ranked]
        captions = [f"{Path(path).name}\n{mistake_caption(p, true, pred, labels)}" for path, p, pred, true in rows]
        save_png(
            captioned_grid(photo_thumbnails([r[0] for r in rows]), captions, columns=4), out / "worst_mistakes.png"
        )
        sections += ["## Worst mistakes", "", "![worst mistakes](worst_mistakes.png)", "",
                     "| photo | true | predicted | probability |", "| --- | --- | --- | --- |"]  # fmt: skip
        for path, p, pred, true in rows:
            sections.append(f"| {path} | {labels[true]} | {labels[pred]} | {float(p[pred]):.3f} |")
        sections.append("")
    save_png(captioned_grid(*augmented_batch(layout, predictor, saved)), out / "augmented_batch.png")
    sections += ["## Augmented training images", "", "![augmented batch](augmented_batch.png)", ""]
    page = out / "index.md"
    page.write_text("\n".join(sections))
    print(f"report: {page}")
    return page


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catdog_pl report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", type=Path, help="a run folder (lightning_logs/version_N) or a checkpoint")
    parser.add_argument("--data_dir", type=Path, help="the data (default: the run's config.yaml data.data_dir)")
    parser.add_argument("--out", type=Path, help="output folder (default: reports/<run or checkpoint name>)")
    parser.add_argument("--worst", type=int, default=12, help="worst mistakes to show")
    ns = parser.parse_args(args)
    report(ns.target, ns.out, ns.data_dir, ns.worst)
