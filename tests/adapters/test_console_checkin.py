"""/checkin in the console: the choice is stored (the console has no scheduler to ask with)."""

from __future__ import annotations

from datetime import time

from adapters.console import PLATFORM
from engine.chat import texts
from engine.types import UserKey
from tests.adapters.test_console import run_jsonl
from tests.conftest import ScriptedEngine

ME = UserKey(PLATFORM, "local")


async def test_the_choice_is_stored_shown_and_removed(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["/checkin 7:30 Asia/Tokyo", "/checkin"])
    assert "every day at 07:30 (Asia/Tokyo)" in records[0]["text"]
    assert records[1] == {
        "command": "checkin",
        "text": texts.checkin_status(time(7, 30), "Asia/Tokyo"),
    }
    [stored] = await scripted_engine.store.checkin_subscriptions(PLATFORM)
    assert (stored.user, stored.chat_id, stored.at, stored.timezone) == (
        ME, "console", time(7, 30), "Asia/Tokyo"
    )  # fmt: skip
    records = await run_jsonl(scripted_engine, ["/checkin 7:30 Mars/Base", "/checkin off"])
    assert [r["text"] for r in records] == [texts.checkin_bad_zone("Mars/Base"), texts.CHECKIN_OFF]
    assert await scripted_engine.store.checkin_subscriptions(PLATFORM) == []
