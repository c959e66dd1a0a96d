"""Images per second for predicting the 1000 photos of test_set from disk, end to end.

    python benchmarks/predict_speed.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Without --ckpt_path it trains nothing: an untrained model costs the same to run. Two figures: the CLI's
`predict` in this process (parsing, checkpoint, loading, decoding, network, CSV), and the Python API's
`Classifier.predict_many`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, table  # noqa: E402

from catdog_pl.cli import main  # noqa: E402
from catdog_pl.module import CatDogClassifier  # noqa: E402
from catdog_pl.prediction import Classifier, expand_inputs  # noqa: E402


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", type=Path)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA / "test_set")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path
        if ckpt is None:
            ckpt = Path(tmp) / "untrained.ckpt"
            model = CatDogClassifier()
            import lightning

            state = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
            torch.save({**state, "pytorch-lightning_version": lightning.__version__}, ckpt)
        paths, threads = expand_inputs(args.data_dir), torch.get_num_threads()
        rows = [("machine", machine())]
        quiet = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--prediction.show", "0"]
        for batch_size in (32, 256):
            start = time.perf_counter()
            cli = main(["predict", "--ckpt_path", str(ckpt), "--data.predict_path", str(args.data_dir),
                        "--data.predict_batch_size", str(batch_size), "--prediction.output", f"{tmp}/p.csv",
                        *quiet])  # fmt: skip
            seconds = time.perf_counter() - start
            writer = next(cb for cb in cli.trainer.callbacks if hasattr(cb, "rows"))
            done = sum(row.ok for row in writer.rows)
            rows.append((f"CLI predict, {len(paths)} files, batch {batch_size}, {cli.datamodule.num_workers} worker(s)",
                         f"{done / seconds:,.0f} images/s ({seconds:.2f} s)"))  # fmt: skip
        torch.set_num_threads(threads)  # the CLI's streaming setup left cores to its workers
        clf = Classifier.from_checkpoint(ckpt)
        for workers in (0, 1, 2):
            start = time.perf_counter()
            result = clf.predict_many(paths, batch_size=256, num_workers=workers)
            seconds = time.perf_counter() - start
            assert all(row.ok for row in result)
            rows.append((f"Classifier.predict_many, batch {256}, {workers} worker(s)",
                         f"{len(paths) / seconds:,.0f} images/s ({seconds:.2f} s)"))  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main_bench()
