"""Fine-tuning recipes side by side on one data set, in one run: the previous recipe (configs/finetune.yaml of a
reference commit: 3 frozen epochs, then 1 of the whole network, under one cosine schedule), the linear probe alone,
LP-FT (today's configs/finetune.yaml), and weight averaging between the two (WiSE-FT), each with its cost and figures.

    python benchmarks/finetune.py                                   # ../shared/data/cats_vs_dogs, every variant
    python benchmarks/finetune.py --data_dir ../shared/data/clothing --variants lpft -- --model.balance true

Each fit: ``python -m catdog_pl fit --config configs/finetune.yaml --data.data_dir <data> [variant options]`` in a
fresh process and a fresh temporary working folder, timed from fork to exit (start-up included) with its peak RSS;
the reference's runs with ``PYTHONPATH`` at a ``git worktree`` of ``--ref``. Then ``test --ckpt_path last.ckpt``
(metrics.json: accuracy with its 95 % Wilson interval, macro-F1, ECE with and without the temperature) and, where the
data has them, ``ood_dev`` accuracy and the four ``single_prediction`` labels through ``Predictor``.

Variants: ``ref`` (the reference commit's config), ``lp`` (LP-FT's probe with a zero fine-tuning rate for one step:
the probe's weights), ``lpft``, and ``wise`` (no fit: the ``lp`` and ``lpft`` weights averaged as
``(1 - a) * lp + a * lpft``, ``a`` chosen among 0.25 / 0.5 / 0.75 on lpft's validation photos; needs both).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, Results, fit_command, last_checkpoint, run_process  # noqa: E402
from models import SINGLE, labelled_photos  # noqa: E402

from catdog_pl.evaluation.intervals import wilson_interval  # noqa: E402
from catdog_pl.inference.predictor import Predictor  # noqa: E402

CONFIG = ROOT / "configs" / "finetune.yaml"
VARIANTS = {
    "ref": [],
    "lp": ["--model.lr", "0", "--trainer.limit_train_batches", "1"],
    "lpft": [],
}
ALPHAS = (0.25, 0.5, 0.75)


def test_figures(ckpt: Path, data_dir: Path, workdir: Path, env: dict[str, str] | None) -> dict:
    command = [sys.executable, "-m", "catdog_pl", "test", "--ckpt_path", str(ckpt), "--data.data_dir", str(data_dir),
               "--trainer.enable_progress_bar", "false", "--trainer.logger", "true",
               "--trainer.default_root_dir", str(workdir / "test_run")]  # fmt: skip
    run = run_process(command, workdir, env)
    found = sorted((workdir / "test_run").rglob("metrics.json"))
    if not found:
        raise RuntimeError(f"no metrics.json from test:\n{run.stdout[-2000:]}")
    return json.loads(found[-1].read_text())


def accuracy_on(predictor: Predictor, paths: list[str], truths: list[str]) -> tuple[int, int]:
    rows = predictor.predict_many(paths)
    return sum(row.ok and row.label == truth for row, truth in zip(rows, truths, strict=True)), len(rows)


def photo_figures(ckpt: Path, data_dir: Path) -> dict[str, object]:
    """``ood_dev`` accuracy and the single photos' labels, where the data has them."""
    figures: dict[str, object] = {}
    predictor = Predictor.from_checkpoint(ckpt)
    if (data_dir / "ood_dev").is_dir():
        figures["ood_dev"] = accuracy_on(predictor, *labelled_photos(data_dir / "ood_dev"))
    single = data_dir / "single_prediction"
    if single.is_dir():
        rows = predictor.predict_many([str(single / name) for name in SINGLE])
        figures["single"] = sum(row.label == want for row, want in zip(rows, SINGLE.values(), strict=True))
    return figures


def averaged(lp: Path, lpft: Path, alpha: float, out: Path) -> Path:
    """A checkpoint of ``(1 - alpha) * lp + alpha * lpft`` (floating tensors; the rest lpft's), lpft's hparams."""
    first, second = torch.load(lp, weights_only=True), torch.load(lpft, weights_only=True)
    mixed = {}
    for name, value in second["state_dict"].items():
        other = first["state_dict"][name]
        mixed[name] = (1 - alpha) * other + alpha * value if value.is_floating_point() else value
    torch.save({**second, "state_dict": mixed}, out)
    return out


def validation_photos(run_dir: Path, data_dir: Path) -> tuple[list[str], list[str]]:
    """The validation photos a run held out (its split.csv) and their labels."""
    split = next(run_dir.rglob("split.csv"))
    with open(split, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "val"]
    hparams = torch.load(next(run_dir.rglob("last.ckpt")), weights_only=True)["hyper_parameters"]
    labels = dict(zip(hparams["class_names"], hparams["labels"], strict=True))
    return [str(data_dir / row["path"]) for row in rows], [labels[row["class"]] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--variants", nargs="+", default=["ref", "lp", "lpft", "wise"])
    parser.add_argument("--ref", default="97c1bec", help="the commit whose configs/finetune.yaml is the old recipe")
    parser.add_argument("extra", nargs="*", help="more fit options for every variant, after --")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    if not data_dir.is_dir():
        raise SystemExit(f"{data_dir}: not found")
    results = Results("finetune.py")
    keep = Path(tempfile.mkdtemp(prefix="finetune_bench_"))
    checkpoints: dict[str, Path] = {}
    table = []
    worktree = None
    try:
        for variant in args.variants:
            section = f"finetune {data_dir.name}: {variant}" + (f" {' '.join(args.extra)}" if args.extra else "")
            workdir = keep / variant
            workdir.mkdir()
            env = None
            if variant == "wise":
                if not {"lp", "lpft"} <= set(checkpoints):
                    print("wise: needs the lp and lpft variants in the same run; skipped")
                    continue
                paths, truths = validation_photos(checkpoints["lpft"].parent.parent, data_dir)
                scores = {}
                for alpha in ALPHAS:
                    ckpt = averaged(checkpoints["lp"], checkpoints["lpft"], alpha, workdir / f"wise_{alpha}.ckpt")
                    scores[alpha] = accuracy_on(Predictor.from_checkpoint(ckpt), paths, truths)[0]
                alpha = max(ALPHAS, key=lambda a: (scores[a], a))
                results.add(section, "alpha chosen on validation", alpha)
                ckpt, seconds, rss, cpu = workdir / f"wise_{alpha}.ckpt", 0.0, 0.0, 0.0
                # test reads the data as the checkpoint's config says; the averaged file keeps lpft's.
            else:
                if variant == "ref":
                    ref = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.ref],
                                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
                    worktree = Path(tempfile.mkdtemp(prefix="catdog_ref_")) / ref
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), ref],
                                   check=True, capture_output=True)  # fmt: skip
                    env = {**os.environ, "PYTHONPATH": str(worktree / "src")}
                    config = worktree / "configs" / "finetune.yaml"
                    section += f" ({ref})"
                else:
                    config = CONFIG
                run = run_process(fit_command(config, data_dir, *VARIANTS[variant], *args.extra), workdir, env)
                ckpt, seconds, rss, cpu = last_checkpoint(workdir), run.seconds, run.peak_rss_mb, run.cpu_seconds
                results.add(section, "fit: CPU time (user + system)", run.cpu_seconds, "s")
                checkpoints[variant] = ckpt
            figures = test_figures(ckpt, data_dir, workdir, env)
            figures.update(photo_figures(ckpt, data_dir))
            if seconds:
                results.add(section, "fit: wall incl. start-up", seconds, "s")
                results.add(section, "fit: peak RSS", rss, "MB")
            results.add(section, "test: accuracy", figures["accuracy"])
            interval = f"{figures['accuracy_low95']:.3f}-{figures['accuracy_high95']:.3f}"
            results.add(section, "test: 95 % Wilson interval", interval)
            results.add(section, "test: macro-F1", figures["macro_f1"])
            results.add(section, "test: ECE before temperature", figures.get("ece_unscaled", figures["ece"]))
            results.add(section, "test: ECE after temperature", figures["ece"])
            results.add(section, "temperature", figures.get("temperature", 1.0))
            if "ood_dev" in figures:
                correct, total = figures["ood_dev"]
                low, high = wilson_interval(correct, total)
                results.add(section, "ood_dev: accuracy", correct / total)
                results.add(section, "ood_dev: 95 % Wilson interval", f"{low:.3f}-{high:.3f}")
            if "single" in figures:
                results.add(section, "single_prediction: right of 4", figures["single"])
            table.append((variant, seconds, cpu, rss, figures, interval))
            print(f"{variant}: done in {seconds:.0f} s", flush=True)
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    print(
        "\n| variant | fit wall (s) | fit CPU (s) | peak RSS (MB) | test acc (95 % CI) | macro-F1 "
        "| ECE before / after T | ood_dev | single |\n" + "| --- " * 9 + "|"
    )
    for variant, seconds, cpu, rss, figures, interval in table:
        ood = figures.get("ood_dev")
        ood_text = f"{ood[0] / ood[1]:.3f}" if ood else "-"
        print(f"| {variant} | {seconds:.0f} | {cpu:.0f} | {rss:,.0f} | {figures['accuracy']:.3f} ({interval}) "
              f"| {figures['macro_f1']:.3f} | {figures.get('ece_unscaled', figures['ece']):.3f} / "
              f"{figures['ece']:.3f} | {ood_text} | {figures.get('single', '-')} |")  # fmt: skip
    print(f"\nruns kept in {keep}")


if __name__ == "__main__":
    main()
