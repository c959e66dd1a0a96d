"""A multi-class data set, end to end: fine-tuning on ../shared/data/clothing (10 classes, imbalanced, train/ +
validation/ + test/), with and without class balancing, each fit's cost and its test figures.

    python benchmarks/clothing.py        # configs/finetune.yaml: plain, data.balanced_sampling, model.balance
    python benchmarks/clothing.py --variants plain --config configs/cnn.yaml

For each variant: ``python -m catdog_pl fit --config <config> --data.data_dir <clothing> [variant options]`` in a
fresh process and a fresh temporary working folder, timed from fork to exit (start-up included) with its peak RSS
(``wait4``); then ``python -m catdog_pl test --ckpt_path <last.ckpt> --data.data_dir <clothing>`` in another, whose
``metrics.json`` gives the test figures: accuracy with its 95 % Wilson interval, macro-F1, balanced accuracy (macro
recall), ECE, and each class's recall. Prints a Markdown table and writes the rows to
``benchmarks/results/<machine>.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Results, fit_command, last_checkpoint, run_process  # noqa: E402

CLOTHING = ROOT.parent / "shared" / "data" / "clothing"
VARIANTS = {
    "plain": [],
    "data.balanced_sampling": [
        "--data.balanced_sampling",
        "true",
    ],  # each class equally likely in a batch (weighted sampler)
    "model.balance": ["--model.balance", "true"],  # each photo's loss weighted by its class's rarity
}


def test_figures(ckpt: Path, data_dir: Path, workdir: Path) -> dict:
    command = [sys.executable, "-m", "catdog_pl", "test", "--ckpt_path", str(ckpt), "--data.data_dir", str(data_dir),
               "--trainer.enable_progress_bar", "false", "--trainer.logger", "true",
               "--trainer.default_root_dir", str(workdir / "test_run")]  # fmt: skip
    run = run_process(command, workdir)
    found = sorted((workdir / "test_run").rglob("metrics.json"))
    if not found:
        raise RuntimeError(f"no metrics.json from test:\n{run.stdout[-2000:]}")
    return json.loads(found[-1].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/finetune.yaml")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data_dir", type=Path, default=CLOTHING)
    parser.add_argument("extra", nargs="*", help="more fit options, after --")
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        raise SystemExit(f"{args.data_dir}: not found (the project's ../shared/data/clothing)")
    config = ROOT / args.config
    results = Results("clothing.py")
    table = []
    for variant in args.variants:
        section = f"clothing: {args.config} {variant}" + (f" {' '.join(args.extra)}" if args.extra else "")
        with tempfile.TemporaryDirectory(prefix="clothing_") as tmp:
            workdir = Path(tmp)
            run = run_process(fit_command(config, args.data_dir.resolve(), *VARIANTS[variant], *args.extra), workdir)
            figures = test_figures(last_checkpoint(workdir), args.data_dir.resolve(), workdir)
        results.add(section, "fit: wall incl. start-up", run.seconds, "s")
        results.add(section, "fit: CPU time (user + system)", run.cpu_seconds, "s")
        results.add(section, "fit: peak RSS", run.peak_rss_mb, "MB")
        results.add(section, "test: accuracy", figures["accuracy"])
        interval = f"{figures['accuracy_low95']:.3f}-{figures['accuracy_high95']:.3f}"
        results.add(section, "test: 95 % Wilson interval", interval)
        results.add(section, "test: macro-F1", figures["macro_f1"])
        results.add(section, "test: balanced accuracy (macro recall)", figures["balanced_accuracy"])
        results.add(section, "test: ECE", figures["ece"])
        recalls = {row["class"]: row["recall"] for row in figures["per_class"]}
        results.add(section, "test: recall per class", " ".join(f"{k} {v:.2f}" for k, v in recalls.items()))
        table.append((variant, run, figures, interval, recalls))
        print(f"{variant}: done in {run.seconds:.0f} s", flush=True)
    print("\n| variant | fit wall (s) | peak RSS (MB) | test acc (95 % CI) | macro-F1 | balanced acc | ECE "
          "| worst recall |\n| --- | --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
    for variant, run, figures, interval, recalls in table:
        worst = min(recalls, key=recalls.get)
        print(f"| {variant} | {run.seconds:.0f} | {run.peak_rss_mb:,.0f} | {figures['accuracy']:.3f} ({interval}) "
              f"| {figures['macro_f1']:.3f} | {figures['balanced_accuracy']:.3f} | {figures['ece']:.3f} "
              f"| {worst} {recalls[worst]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
