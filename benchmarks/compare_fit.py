"""The fit of configs/cnn.yaml, before and after a change, paired in one run: is the new code slower than noise?

    python benchmarks/compare_fit.py                       # 3 pairs against 144ead1 (~5 min on 2 cores)
    python benchmarks/compare_fit.py --ref 144ead1 --pairs 5
    python benchmarks/compare_fit.py --max_epochs 5        # shorter fits on both sides, for a loaded machine

The reference commit is checked out into a temporary ``git worktree`` under /tmp (removed at the end). Each run is
``python -m catdog_pl fit --config <its checkout>/configs/cnn.yaml --data.data_dir <data> --trainer.enable_progress_bar
false`` in a fresh process and a fresh temporary working folder, with ``PYTHONPATH`` pointing at the reference's
``src/`` or at this checkout's ``src/``. The two sides alternate and swap their order every pair (old new, new old,
...), so that a shared machine's drifting load falls on both alike: only the ratios of a pair mean something.
For each run: wall seconds from fork to exit (start-up included), peak RSS (``wait4``), and the test accuracy of its
``last.ckpt`` (a ``test`` run by the same code, not timed). Prints each pair's new/old ratios and their median,
and writes the rows to ``benchmarks/results/<machine>.csv``.

144ead1 is the last commit before the restructure: its command line still pinned glibc's malloc thresholds, turned
Lightning's NVML-based CUDA check off where NVML is missing, and flushed denormals in ``prepare_process``; its module
bypassed ``nn.Module.__setattr__`` and its data module set the thread count in ``setup``. The new code keeps only
``torch.set_flush_denormal(True)`` in ``main``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_DATA, Results, Run, fit_command, run_process, test_accuracy  # noqa: E402


def fit(checkout: Path, data_dir: Path, workdir: Path, extra: list[str]) -> tuple[Run, float]:
    """One fit by the code of ``checkout`` in ``workdir``; its Run and the test accuracy of its last.ckpt."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    run = run_process(fit_command(checkout / "configs" / "cnn.yaml", data_dir, *extra), workdir, env)
    ckpt = workdir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    return run, test_accuracy(ckpt, data_dir, workdir, env)


def package_file(checkout: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    code = "import catdog_pl; print(catdog_pl.__file__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="144ead1", help="the commit to compare against")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--first", choices=["old", "new"], default="old", help="the side that runs first in pair 1")
    parser.add_argument("--max_epochs", type=int, help="shorter fits for both sides (default: the config's 25)")
    args = parser.parse_args()
    extra = [] if args.max_epochs is None else ["--trainer.max_epochs", str(args.max_epochs)]
    data_dir = args.data_dir.resolve()
    ref = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.ref], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "-uno", "--", "src", "configs"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    new_name = f"{head}{'+edits' if dirty else ''}"
    results = Results("compare_fit.py")
    epochs = "" if args.max_epochs is None else f", {args.max_epochs} epochs"
    section = f"compare_fit {ref} vs {new_name}{epochs}"
    worktree = Path(tempfile.mkdtemp(prefix="catdog_ref_")) / ref
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), ref], check=True,
                   capture_output=True)  # fmt: skip
    try:
        sides = {"old": worktree, "new": ROOT}
        for checkout in sides.values():
            found = package_file(checkout).strip()
            if not found.startswith(str(checkout / "src")):
                raise RuntimeError(f"PYTHONPATH={checkout / 'src'} imports catdog_pl from {found}")
        print(f"old = {ref} (worktree {worktree}), new = {new_name} ({ROOT}); {args.pairs} pairs\n")
        ratios: dict[str, list[float]] = {"wall": [], "rss": []}
        for pair in range(args.pairs):
            order = ["old", "new"] if (pair + (args.first == "new")) % 2 == 0 else ["new", "old"]
            measured: dict[str, tuple[Run, float]] = {}
            for name in order:
                with tempfile.TemporaryDirectory(prefix=f"fit_{name}_") as tmp:
                    measured[name] = fit(sides[name], data_dir, Path(tmp), extra)
            for name in ("old", "new"):
                run, acc = measured[name]
                label = f"pair {pair + 1} ({' then '.join(order)}), {name}"
                results.add(section, f"{label}: wall incl. start-up", run.seconds, "s")
                results.add(section, f"{label}: peak RSS", run.peak_rss_mb, "MB")
                results.add(section, f"{label}: test acc of last.ckpt", acc, "")
            ratios["wall"].append(measured["new"][0].seconds / measured["old"][0].seconds)
            ratios["rss"].append(measured["new"][0].peak_rss_mb / measured["old"][0].peak_rss_mb)
            results.add(section, f"pair {pair + 1}: wall new/old", ratios["wall"][-1], "ratio")
            results.add(section, f"pair {pair + 1}: peak RSS new/old", ratios["rss"][-1], "ratio")
        results.add(section, f"median of {args.pairs} pairs: wall new/old", statistics.median(ratios["wall"]), "ratio")
        results.add(section, f"median of {args.pairs} pairs: peak RSS new/old", statistics.median(ratios["rss"]),
                    "ratio")  # fmt: skip
        spread = f"{min(ratios['wall']):.3f}-{max(ratios['wall']):.3f}"
        results.add(section, f"range of the {args.pairs} pairs' wall ratios", spread, "ratio")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
        if worktree.parent.exists() and not any(worktree.parent.iterdir()):
            worktree.parent.rmdir()


if __name__ == "__main__":
    main()
