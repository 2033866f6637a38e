"""The label's accuracy split by how one careful reader reads each evaluation line.

    python -m benchmarks.accuracy.reading RESULT.json READING.jsonl [--data FILE]

RESULT.json is what `benchmarks.accuracy.sentiment --method logits --json` wrote (its
predictions are in `balanced_head` order of the data file, `--limit` as recorded);
READING.jsonl holds, per evaluation line (its `source` file name and `line`), the `reading`
of a reader who saw the text only, neither the dataset's label nor the model's:
`positive`, `negative`, or `unclear` (mixed, neutral, a hotel's reply, a line whose side
depends on the rest of its review); `seen_before_reading` marks lines whose label and model
output the reader had seen before reading them (`--blind-only` leaves them out).
ChnSentiCorp labels whole reviews, so a single line can carry the opposite label of what it
says ("早餐一般" labelled positive).

Reported: how the reading agrees with the dataset's label, and the label's accuracy on all
rows, on the rows the reader reads the same side as the dataset (the unambiguous ones), on
the unclear ones, and on those the reader reads the other way. This is a report on the
evaluation rows, never a lever fitted on them; the headline accuracy stays the one on all rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.accuracy.sentiment import balanced_head
from benchmarks.common import read_jsonl, table


def key(row: dict[str, Any]) -> tuple[str, int]:
    return Path(str(row["source"])).name, int(row["line"])


def split_accuracy(
    rows: list[dict[str, Any]], predictions: list[str | None], readings: dict[tuple[str, int], str]
) -> list[list[object]]:
    groups: dict[str, list[bool]] = {"all rows": []}
    for row, predicted in zip(rows, predictions, strict=True):
        right = predicted == row["label"]
        groups["all rows"].append(right)
        reading = readings[key(row)]
        if reading == row["label"]:
            group = "reader agrees with the label"
        elif reading == "unclear":
            group = "reader: unclear as a single line"
        else:
            group = "reader reads the other side"
        groups.setdefault(group, []).append(right)
    return [[name, len(values), sum(values) / len(values)] for name, values in groups.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy.reading",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("result", type=Path)
    parser.add_argument("reading", type=Path)
    parser.add_argument("--data", type=Path, default=Path("benchmarks/results/data/zh.jsonl"))
    parser.add_argument("--blind-only", action="store_true", help="only lines read blind")
    args = parser.parse_args(argv)
    report = json.loads(args.result.read_text(encoding="utf-8"))
    (results,) = [value for name, value in report["files"].items()
                  if Path(name).name == args.data.name]  # fmt: skip
    rows = balanced_head(read_jsonl(args.data), report.get("limit"))
    read = read_jsonl(args.reading)
    readings = {key(row): str(row["reading"]) for row in read}
    if args.blind_only:
        seen = {key(row) for row in read if row.get("seen_before_reading")}
        kept = [i for i, row in enumerate(rows) if key(row) not in seen]
        rows = [rows[i] for i in kept]
        results = {"logits": {"predictions": [results["logits"]["predictions"][i] for i in kept]}}
    agreement = Counter((row["label"], readings[key(row)]) for row in rows)
    counts = [[gold, reading, n] for (gold, reading), n in sorted(agreement.items())]
    print(table(["dataset label", "reader", "rows"], counts))
    print()
    accuracy = split_accuracy(rows, results["logits"]["predictions"], readings)
    print(table(["rows", "n", "label accuracy"], accuracy, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
