"""The results CSVs as Markdown: one table per machine, for benchmarks/README.md.

python benchmarks/table.py                                    # every benchmarks/results/*.csv
python benchmarks/table.py benchmarks/results/cpu-2core-amd-epyc.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, read_results  # noqa: E402


def markdown(path: Path) -> str:
    """One table of ``path``'s rows, after the machine, the dates and each script's command."""
    rows = read_results(path)
    scripts = list(dict.fromkeys(row["script"] for row in rows))
    rows.sort(key=lambda row: scripts.index(row["script"]))  # grouped by script, each in its measuring order
    machines = sorted({row["machine"] for row in rows})
    dates = sorted({row["date"] for row in rows})
    lines = [
        f"### {path.stem}",
        "",
        f"Machine: {'; '.join(machines)}. Measured {dates[0]} to {dates[-1]}. Commands:",
        "",
    ]
    lines += [f"- `{command}`" for command in dict.fromkeys(row["command"] for row in rows)]
    lines += ["", "| script | section | measure | value | unit |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['script']} | {r['section']} | {r['measure']} | {r['value']} | {r['unit']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    print("\n\n".join(markdown(path) for path in (args.files or sorted(RESULTS.glob("*.csv")))))


if __name__ == "__main__":
    main()
