"""The models side by side: each config's fit, its cost, and how its last.ckpt does on test_set, on the
generalisation set ood_dev, and on the four single_prediction photos.

    python benchmarks/models.py                              # configs/cnn.yaml, scratch.yaml, finetune.yaml
    python benchmarks/models.py --configs configs/cnn.yaml   # one of them
    python benchmarks/models.py --configs configs/cnn.yaml --seeds 42 1 2 \
        --variant crop "--data.augment crop --model.interpolation bilinear"   # over seeds, beside a variant

For each config (one that does not exist is skipped, with a line saying so): ``python -m catdog_pl fit --config
<config> --data.data_dir <data> --trainer.enable_progress_bar false`` in a fresh process and a fresh temporary
working folder, timed from fork to exit (start-up included) with its peak RSS (``wait4``). Its ``last.ckpt`` is
then evaluated in this process with ``Predictor.predict_many`` (the preprocessing and labels of ``test`` and
``predict``): accuracy with its 95 % Wilson interval on ``test_set/{cats,dogs}`` and on ``ood_dev/{cats,dogs}``
(the true label is the folder's; an unreadable photo counts as wrong), and the labels given to
``single_prediction/cat_or_dog_{1..4}.jpg`` (cat, dog, dog, cat). Prints a Markdown table and writes the rows to
``benchmarks/results/<machine>.csv``, one section per config.

``--seeds`` fits each config once per seed (``--seed_everything``); ``--variant NAME "ARGS"`` (repeatable) adds a
fit of each config with these extra command-line arguments. Within a seed the config as it is and its variants run
one after the other, so each variant's fit wall is also given as a ratio to the plain config's in the same run
(per seed and of the summed walls); the accuracies get their mean over the seeds.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, Results, fit_command, last_checkpoint, run_process  # noqa: E402

from catdog_pl.core.labels import label_of  # noqa: E402
from catdog_pl.data.inputs import expand_inputs  # noqa: E402
from catdog_pl.evaluation.metrics import format_accuracy, wilson_interval  # noqa: E402
from catdog_pl.inference.predictor import Predictor  # noqa: E402

DEFAULT_CONFIGS = ("configs/cnn.yaml", "configs/scratch.yaml", "configs/finetune.yaml")
SINGLE = {f"cat_or_dog_{i}.jpg": label for i, label in enumerate(("cat", "dog", "dog", "cat"), start=1)}


def labelled_photos(split_dir: Path) -> tuple[list[str], list[str]]:
    """Every photo under ``split_dir/<class folder>/`` and the label its folder names (``cats`` -> ``cat``)."""
    paths, truths = [], []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = expand_inputs(class_dir)
        paths += found
        truths += [label_of(class_dir.name)] * len(found)
    return paths, truths


def accuracy(predictor: Predictor, split_dir: Path) -> tuple[int, int, int]:
    """(correct, total, unreadable) of ``predictor`` on the class folders of ``split_dir``."""
    paths, truths = labelled_photos(split_dir)
    rows = predictor.predict_many(paths)
    correct = sum(row.ok and row.label == truth for row, truth in zip(rows, truths, strict=True))
    return correct, len(rows), sum(not row.ok for row in rows)


def evaluate(results: Results, section: str, ckpt: Path, data_dir: Path) -> tuple[dict[str, str], dict[str, float]]:
    """Rows for ``ckpt``; returns the table's text per split and the accuracies of ``test_set`` and ``ood_dev``."""
    predictor = Predictor.from_checkpoint(ckpt)
    summary, accuracies = {}, {}
    for split in ("test_set", "ood_dev"):
        correct, total, unreadable = accuracy(predictor, data_dir / split)
        low, high = wilson_interval(correct, total)
        results.add(section, f"{split}: accuracy of last.ckpt", correct / max(total, 1))
        results.add(section, f"{split}: 95 % Wilson interval", f"{low:.3f}-{high:.3f}")
        results.add(section, f"{split}: photos (unreadable)", f"{total} ({unreadable})")
        summary[split] = format_accuracy(correct, total)
        accuracies[split] = correct / max(total, 1)
    single = data_dir / "single_prediction"
    rows = predictor.predict_many([single / name for name in SINGLE])
    labels = [row.label or "error" for row in rows]
    right = sum(label == truth for label, truth in zip(labels, SINGLE.values(), strict=True))
    results.add(section, "single_prediction 1-4: labels (truth cat dog dog cat)", " ".join(labels))
    results.add(section, "single_prediction 1-4: right", right, f"of {len(SINGLE)}")
    summary["single"] = f"{' '.join(labels)} ({right}/{len(SINGLE)})"
    return summary, accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="fit each config once per seed")
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "ARGS"),
                        help="also fit each config with these extra arguments (one quoted string)")  # fmt: skip
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    results = Results("models.py")
    variants = [("", [])] + [(name, shlex.split(extra)) for name, extra in args.variant]
    seeds = args.seeds or [None]
    table = []
    for name in args.configs:
        config = (ROOT / name) if not Path(name).is_absolute() else Path(name)
        if not config.exists():
            print(f"{name}: does not exist (yet), skipped", flush=True)
            continue
        label = str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config)
        runs: dict[str, list[tuple[float, dict[str, str], dict[str, float]]]] = {}
        for seed in seeds:
            for variant, extra in variants:
                row = label + (f" [{variant}]" if variant else "") + (f" seed {seed}" if seed is not None else "")
                section = f"models: {row}"
                seed_args = ["--seed_everything", str(seed)] if seed is not None else []
                with tempfile.TemporaryDirectory(prefix="models_") as tmp:
                    workdir = Path(tmp)
                    run = run_process(fit_command(config, data_dir, *seed_args, *extra), workdir)
                    results.add(section, "fit: wall incl. start-up", run.seconds, "s")
                    results.add(section, "fit: peak RSS", run.peak_rss_mb, "MB")
                    summary, accuracies = evaluate(results, section, last_checkpoint(workdir), data_dir)
                runs.setdefault(variant, []).append((run.seconds, summary, accuracies))
                if variant:
                    ratio = run.seconds / runs[""][-1][0]
                    results.add(section, "fit: wall / the plain config's, same seed", ratio, "ratio")
                table.append((row, run.seconds, run.peak_rss_mb, summary))
        if len(seeds) > 1 or len(variants) > 1:
            summarise(results, label, runs)
    if table:
        print("\n| config | fit wall (s) | peak RSS (MB) | test_set acc (95 % CI, n) | ood_dev acc (95 % CI, n) "
              "| single_prediction 1-4 (cat dog dog cat) |\n| --- | --- | --- | --- | --- | --- |")  # fmt: skip
        for label, seconds, rss, summary in table:
            print(f"| {label} | {seconds:.0f} | {rss:,.0f} | {summary['test_set']} | {summary['ood_dev']} "
                  f"| {summary['single']} |")  # fmt: skip


def summarise(results: Results, label: str, runs: dict[str, list[tuple[float, dict, dict[str, float]]]]) -> None:
    """Per variant: the mean accuracies over the seeds, and the summed fit wall as a ratio to the plain config's."""
    plain_wall = sum(seconds for seconds, _, _ in runs[""])
    for variant, rows in runs.items():
        section = f"models: {label}" + (f" [{variant}]" if variant else "") + f" mean of {len(rows)}"
        for split in ("test_set", "ood_dev"):
            results.add(section, f"{split}: mean accuracy", statistics.mean(acc[split] for _, _, acc in rows))
        if variant:
            wall = sum(seconds for seconds, _, _ in rows)
            results.add(section, "fit: summed wall / the plain config's", wall / plain_wall, "ratio")


if __name__ == "__main__":
    main()
