"""What recording a send before it goes out costs per send, on SQLite.

    python -m benchmarks.speed.send_intent [--sends 400] [--db PATH]

Every message of a reply is recorded in its inbox row: its id right after the send, and (since
Telegram's sends became recorded like Discord's) the send as under way just before it, so a
restart knows a message may exist that it cannot find (docs/reliability.md). The added cost is
one more local write (ChatService.note_reply → SqlMoodStore.set_reply_messages) per send. This
times, on one SQLite file, the bookkeeping of a send both ways, interleaved so both share the
machine's noise: `after` = the id write alone (before), `both` = the intent write and the id
write (now). The platform call itself (a network round trip, tens to hundreds of ms) is not
included: the figure is what the write adds in front of it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from engine.types import IncomingMessage, MessageKey, ReplyMessages
from storage.store import SqlMoodStore


async def measure(db: Path, sends: int) -> dict[str, list[float]]:
    store = await SqlMoodStore.open(db)
    try:
        key = MessageKey("telegram", "1", "1")
        message = IncomingMessage("telegram", "42", "1", "hello", "1")
        await store.claim_message(key, message.user, datetime.now(UTC), message)
        times: dict[str, list[float]] = {"after": [], "both": []}
        chunks: tuple[str, ...] = ()
        for n in range(sends):
            kind = "both" if n % 2 else "after"
            start = time.perf_counter()
            if kind == "both":
                await store.set_reply_messages(key, ReplyMessages(chunks, None, f"key{n}"))
            chunks = (*chunks[-3:], str(1000 + n))  # a reply of a few messages, as recorded
            await store.set_reply_messages(key, ReplyMessages(chunks))
            times[kind].append((time.perf_counter() - start) * 1000.0)
        return times
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=400)
    parser.add_argument("--db", type=Path, help="a SQLite file (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bot.db"
        times = asyncio.run(measure(db, args.sends))
    after, both = times["after"], times["both"]
    for name, values in (("id write only (before)", after), ("intent + id (now)", both)):
        cuts = statistics.quantiles(values, n=20)
        print(f"{name:24} median {statistics.median(values):6.3f} ms   "
              f"p95 {cuts[18]:6.3f} ms   ({len(values)} sends)")  # fmt: skip
    added = statistics.median(both) - statistics.median(after)
    print(f"added per send (median difference): {added:.3f} ms")


if __name__ == "__main__":
    main()
