"""Images per second for predicting the 1000 photos of test_set from disk, end to end.

    python benchmarks/predict_speed.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Without --ckpt_path it trains nothing: an untrained model costs the same to run (the Keras CNN, or with
``--config configs/finetune.yaml`` that config's model). Two kinds of figures: the CLI's `predict` in this process
(parsing, checkpoint, loading, decoding, network, CSV) at batch 32 and 256, and the Python API's
`Predictor.predict_many` at batch 32 (its default) and 256, and at 32 with 1 and 2 DataLoader workers. Rows print
as a Markdown table and go into ``benchmarks/results/<machine>.csv``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, Results, untrained_checkpoint  # noqa: E402

from catdog_pl.cli import main as cli_main  # noqa: E402
from catdog_pl.data.inputs import expand_inputs  # noqa: E402
from catdog_pl.inference.predictor import PredictionWriter, Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", type=Path)
    parser.add_argument("--config", type=Path, help="without --ckpt_path: an untrained model of this config's model:")
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA / "test_set")
    args = parser.parse_args()
    results = Results("predict_speed.py")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or untrained_checkpoint(Path(tmp) / "untrained.ckpt", args.config)
        predictor = Predictor.from_checkpoint(ckpt)
        model = f"{predictor.hparams['backbone']} {predictor.image_size} px"
        section = f"predict ({model})" if args.ckpt_path else f"predict (untrained {model})"
        paths = expand_inputs(args.data_dir)
        quiet = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--prediction.show", "0"]
        for batch_size in (32, 256):
            start = time.perf_counter()
            cli = cli_main(["predict", "--ckpt_path", str(ckpt), "--data.predict_path", str(args.data_dir),
                            "--data.predict_batch_size", str(batch_size), "--prediction.output", f"{tmp}/p.csv",
                            *quiet])  # fmt: skip
            seconds = time.perf_counter() - start
            writer = next(cb for cb in cli.trainer.callbacks if isinstance(cb, PredictionWriter))
            done = sum(row.ok for row in writer.rows)
            workers = cli.datamodule.num_workers
            results.add(section, f"CLI predict in-process, {len(paths)} files, batch {batch_size}, {workers} worker(s)",
                        done / seconds, "images/s")  # fmt: skip
        for batch_size, workers in ((32, 0), (256, 0), (32, 1), (32, 2)):
            start = time.perf_counter()
            rows = predictor.predict_many(paths, batch_size=batch_size, num_workers=workers)
            seconds = time.perf_counter() - start
            assert all(row.ok for row in rows)
            results.add(section, f"Predictor.predict_many, {len(paths)} files, batch {batch_size}, {workers} worker(s)",
                        len(paths) / seconds, "images/s")  # fmt: skip


if __name__ == "__main__":
    main()
