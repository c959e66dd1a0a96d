"""``python -m catdog_pl report``: a run as PNGs and a Markdown page, for people without TensorBoard.

    python -m catdog_pl report lightning_logs/version_0             # data_dir from the run's config.yaml
    python -m catdog_pl report path/to/last.ckpt --data_dir dataset --out reports/mine

Writes ``curves.png`` (loss, accuracy, AUROC, F1 and learning rate per epoch, from the run's event files),
``confusion_matrix.png``, ``worst_mistakes.png`` (the test photos the checkpoint gets most wrong, with true label,
predicted label and probability), ``augmented_batch.png`` (what the training augmentation does) and
``index.md`` with the metrics table linking them.
"""

from __future__ import annotations

import argparse
import bisect
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from catdog_pl.errors import InputError
from catdog_pl.folders import TEST_DIR, TRAIN_DIR, SafeImageFolder, check_layout
from catdog_pl.prediction import Classifier, label_of
from catdog_pl.visualize import confusion_counts

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


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's event files: tag -> [(step, value)], the last value of each step kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, dict[int, float]] = {}
    for events in sorted({path.parent for path in run.glob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                scalars.setdefault(tag, {})[event.step] = event.value
    return {tag: sorted(values.items()) for tag, values in scalars.items()}


def epoch_series(scalars: dict, tag: str) -> tuple[list[int], list[float]]:
    """A tag's values against their epoch: Lightning logs ``epoch`` at each epoch's last step, so a value logged
    at step ``s`` belongs to the epoch of the first such step at or after ``s``."""
    marks = scalars.get("epoch", [])
    steps = [step for step, _ in marks]
    points = []
    for step, value in scalars.get(tag, []):
        at = bisect.bisect_left(steps, step)
        points.append((int(marks[at][1]) if at < len(marks) else int(marks[-1][1]) + 1 if marks else step, value))
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(scalars: dict, output: Path) -> Path | None:
    import matplotlib.pyplot as plt

    lr_tags = [tag for tag in scalars if tag.startswith("lr-")]
    panels = [(key, title) for key, title in CURVES if f"train/{key}" in scalars or f"val/{key}" in scalars]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels) + bool(lr_tags), figsize=(4.2 * (len(panels) + bool(lr_tags)), 3.6))
    axes = np.atleast_1d(axes)
    for ax, (key, title) in zip(axes, panels, strict=False):
        for stage, style in (("train", "-o"), ("val", "-s")):
            epochs, values = epoch_series(scalars, f"{stage}/{key}")
            if values:
                ax.plot(epochs, values, style, markersize=3, label=stage)
        ax.set(title=title, xlabel="epoch", ylabel=title)
        ax.grid(alpha=0.3)
        ax.legend()
    if lr_tags:
        epochs, values = epoch_series(scalars, lr_tags[0])
        axes[-1].plot(epochs, values, "-o", markersize=3)
        axes[-1].set(title="learning rate", xlabel="epoch", ylabel="learning rate")
        axes[-1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def plot_confusion(counts: np.ndarray, class_names: Sequence[str], title: str, output: Path) -> Path:
    import matplotlib.pyplot as plt

    labels = [label_of(name) for name in class_names]
    fig, ax = plt.subplots(figsize=(4.4, 4))
    ax.imshow(counts, cmap="Blues")
    for (true, pred), value in np.ndenumerate(counts):
        share = value / max(counts[true].sum(), 1)
        colour = "white" if value > counts.max() / 2 else "black"
        ax.text(pred, true, f"{value}\n({share:.0%} of {labels[true]}s)", ha="center", va="center", color=colour)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels, xlabel="predicted", ylabel="true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def plot_mistakes(rows: list[tuple[str, int, float]], class_names: Sequence[str], threshold: float, output: Path):
    """Photos (as they are on disk) of the worst mistakes: (path, true label, p_dog), worst first."""
    import matplotlib.pyplot as plt
    from PIL import Image

    columns = 4
    lines = max(1, -(-len(rows) // columns))
    fig, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 3.5 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (path, true, p_dog) in zip(axes.flat, rows, strict=False):
        with Image.open(path) as img:
            img.thumbnail((256, 256))
            ax.imshow(np.asarray(img.convert("RGB")))
        predicted = label_of(class_names[int(p_dog >= threshold)])
        confidence = p_dog if p_dog >= threshold else 1 - p_dog
        ax.set_title(
            f"{Path(path).name}\ntrue {label_of(class_names[true])}, predicted {predicted}\n"
            f"p_dog {p_dog:.2f} ({confidence:.0%} sure)",
            fontsize=9,
            color="darkred",
        )
    fig.suptitle("Worst mistakes on the test set (highest loss first)")
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def plot_augmented(data_dir: Path, image_size: int, class_names: Sequence[str], output: Path, count: int = 16):
    import matplotlib.pyplot as plt

    from catdog_pl.cache import decode_all
    from catdog_pl.transforms import BatchTrainAugment, train_source_size

    folder = SafeImageFolder(str(data_dir / TRAIN_DIR))
    picks = np.random.default_rng(0).choice(len(folder.samples), size=min(count, len(folder.samples)), replace=False)
    samples = [folder.samples[i] for i in picks]
    images, _ = decode_all([path for path, _ in samples], train_source_size(image_size))
    torch.manual_seed(0)
    augmented = BatchTrainAugment(image_size)(images)
    columns = 8
    fig, axes = plt.subplots(-(-len(samples) // columns), columns, figsize=(1.7 * columns, 2.0 * -(-len(samples) // 8)))
    for ax in np.atleast_1d(axes).flat:
        ax.axis("off")
    for ax, image, (_, target) in zip(np.atleast_1d(axes).flat, augmented, samples, strict=False):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(label_of(class_names[target]), fontsize=9)
    fig.suptitle(f"Training images as the network sees them ({image_size}x{image_size}, zoom, shear, flip)")
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def evaluate(classifier: Classifier, data_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    folder = SafeImageFolder(str(data_dir / TEST_DIR))
    paths = [path for path, _ in folder.samples]
    rows = classifier.predict_many(paths, num_workers=min(2, os.cpu_count() or 1))
    ok = [i for i, row in enumerate(rows) if row.ok]
    targets = np.array([folder.targets[i] for i in ok])
    return [paths[i] for i in ok], targets, np.array([rows[i].p_dog for i in ok])


def report(target: Path, out: Path | None = None, data_dir: Path | None = None, worst: int = 12) -> Path:
    """Write the report of a run folder or checkpoint into ``out``; return the Markdown page's path."""
    import matplotlib

    matplotlib.use("Agg")
    run, checkpoint = find_run(target)
    if data_dir is None and run is not None and (run / "config.yaml").is_file():
        data_dir = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["data_dir"])
    if data_dir is None:
        raise InputError(f"{target}: no run config.yaml to read data_dir from; pass --data_dir")
    out = out or Path("reports") / (run.name if run is not None else checkpoint.stem)
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier.from_checkpoint(checkpoint)
    names, threshold = classifier.class_names, classifier.threshold
    check_layout(data_dir, (TEST_DIR,))
    sections = [f"# Report: {run or checkpoint}", "", f"Checkpoint `{checkpoint}`, test photos from `{data_dir}`.", ""]

    scalars = read_scalars(run) if run is not None else {}
    if scalars:
        sections += ["## Last epoch", "", "| metric | train | val |", "| --- | --- | --- |"]
        for key, title in CURVES:
            values = [epoch_series(scalars, f"{stage}/{key}")[1] for stage in ("train", "val")]
            sections.append(f"| {title} | " + " | ".join(f"{v[-1]:.3f}" if v else "" for v in values) + " |")
        if plot_curves(scalars, out / "curves.png"):
            sections += ["", "![training curves](curves.png)", ""]

    paths, targets, p_dog = evaluate(classifier, data_dir)
    counts = confusion_counts(torch.from_numpy(p_dog), torch.from_numpy(targets), threshold)
    accuracy = np.trace(counts) / counts.sum()
    sections += ["## Test set", "", f"{len(paths)} photos, accuracy **{accuracy:.3f}** at threshold {threshold:g}.", ""]
    title = f"{len(paths)} test photos, accuracy {accuracy:.3f}"
    plot_confusion(counts, names, title, out / "confusion_matrix.png")
    sections += ["![confusion matrix](confusion_matrix.png)", ""]
    losses = -np.log(np.clip(np.where(targets == 1, p_dog, 1 - p_dog), 1e-7, 1))
    wrong = np.nonzero((p_dog >= threshold).astype(int) != targets)[0]
    ranked = wrong[np.argsort(-losses[wrong])][:worst]
    if len(ranked):
        rows = [(paths[i], int(targets[i]), float(p_dog[i])) for i in ranked]
        plot_mistakes(rows, names, threshold, out / "worst_mistakes.png")
        sections += ["## Worst mistakes", "", "![worst mistakes](worst_mistakes.png)", "",
                     "| photo | true | predicted | p_dog |", "| --- | --- | --- | --- |"]  # fmt: skip
        for path, true, p in rows:
            sections.append(f"| {path} | {label_of(names[true])} | {label_of(names[int(p >= threshold)])} | {p:.3f} |")
        sections.append("")
    if (data_dir / TRAIN_DIR).is_dir():
        plot_augmented(data_dir, classifier.image_size, names, out / "augmented_batch.png")
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
