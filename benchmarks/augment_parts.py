"""What the keras augmentation mode changes in a fit, against the crop mode, interleaved in one process (medians of
3): decoding 200 training photos into the cache (keras: the whole JPEG, nearest to 64 px; crop: ``Image.draft``,
bilinear to 80 px) and one epoch of batched augmentation (63 batches of 32). The network and its steps are the same.

    python benchmarks/augment_parts.py [--data_dir ../shared/data/cats_vs_dogs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, Results  # noqa: E402

from catdog_pl.data.cache import decode_all  # noqa: E402
from catdog_pl.data.transforms import BatchTrainAugment  # noqa: E402

MODES = {"keras": (64, "nearest"), "crop": (80, "bilinear")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    paths = sorted(str(p) for p in (args.data_dir / "training_set").glob("*/*.jpg"))[::10]
    decode, augment = {m: [] for m in MODES}, {m: [] for m in MODES}
    for _ in range(3):
        for mode, (side, interpolation) in MODES.items():
            start = time.perf_counter()
            images, _ = decode_all(paths, side, threads=2, progress=False, interpolation=interpolation)
            decode[mode].append(time.perf_counter() - start)
            batch, transform = images[:32], BatchTrainAugment(64, mode=mode)
            start = time.perf_counter()
            for _ in range(63):
                transform(batch)
            augment[mode].append(time.perf_counter() - start)
    results = Results("augment_parts.py")
    for name, table in ((f"decode {len(paths)} photos", decode), ("augment 63 batches of 32", augment)):
        keras, crop = statistics.median(table["keras"]), statistics.median(table["crop"])
        results.add("augment parts", f"{name}: keras", keras, "s")
        results.add("augment parts", f"{name}: crop", crop, "s")
        results.add("augment parts", f"{name}: keras / crop", keras / crop, "ratio")


if __name__ == "__main__":
    main()
