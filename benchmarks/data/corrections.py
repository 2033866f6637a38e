"""Users' label corrections as labelled data, in the development sets' format.

    python -m benchmarks.data.corrections OUT.jsonl [--database URL_OR_PATH] [--neutral]

Reads every corrected mood event (engine/chat/journal.py: a user pressed a correction button or sent
/wrong) from the bot's database (DATABASE_URL / DATABASE_PATH, as the bot reads them, unless
--database is given) and writes one JSONL row per correction whose text was stored
(STORE_MESSAGE_TEXT=true keeps an excerpt; without it there is no text to learn from and the
row is only counted): {"text", "label"} as benchmarks.accuracy.sentiment and
scripts.fitting.label_fit read them, plus where it came from ("shown": what the model's label
showed, "p_positive", "platform", "created_at"). A correction to neutral has no side: it is left
out unless --neutral, which writes it with "label": "neutral" (for benchmarks.accuracy.neutral's
readout).

The text is an excerpt (EXCERPT_CHARS), so a long message is cut; the label is the user's word
for their own message, which is what the calibration wants to match.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import bench_settings, table, write_jsonl
from engine.types import MoodEvent
from storage.store import SqlMoodStore
from storage.target import DatabaseTarget


def rows_of(
    events: list[MoodEvent], neutral: bool = False
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The dataset rows of corrected events, and what was counted but not written."""
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for event in events:
        if event.corrected is None:
            continue
        counts["corrected"] += 1
        if not event.excerpt:
            counts["no text stored"] += 1
            continue
        if event.corrected == "neutral" and not neutral:
            counts["to neutral (left out)"] += 1
            continue
        rows.append(
            {
                "text": event.excerpt,
                "label": event.corrected,
                "shown": event.shown_tone,
                "p_positive": round(event.p_positive, 4),
                "platform": event.platform,
                "created_at": event.created_at.isoformat(),
                "source": "correction",
            }
        )
        counts["written"] += 1
    return rows, counts


async def export(database: str | DatabaseTarget, out: Path, neutral: bool = False) -> Counter[str]:
    store = await SqlMoodStore.open(database)
    try:
        events = await store.corrected_events()
    finally:
        await store.close()
    rows, counts = rows_of(events, neutral)
    write_jsonl(out, rows)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the JSONL file to write")
    parser.add_argument("--database", help="a SQLite path or DATABASE_URL (default: settings)")
    parser.add_argument("--neutral", action="store_true", help="keep corrections to neutral")
    args = parser.parse_args(argv)
    database: str | DatabaseTarget = args.database or bench_settings().storage.target
    counts = asyncio.run(export(database, args.out, args.neutral))
    print(table(["corrections", "rows"], sorted(counts.items())))
    print(f"wrote {counts['written']} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
