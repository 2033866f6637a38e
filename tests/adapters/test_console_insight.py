"""/mood why, /mood week and /digest in the console (JSONL and interactive)."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.console import PLATFORM
from engine.chat import texts
from engine.types import DigestSubscription, UserKey
from tests.adapters.test_console import run_console, run_jsonl
from tests.conftest import ScriptedEngine

ME = UserKey(PLATFORM, "local")


async def test_why_after_a_message_explains_it_and_without_one_says_so(
    scripted_engine: ScriptedEngine,
) -> None:
    records = await run_jsonl(
        scripted_engine, ["/mood why", "下雨了，但是演唱会太棒了！", "/mood why"]
    )
    assert records[0] == {"command": "mood", "text": texts.WHY_NOTHING}
    answer = records[2]["text"]
    assert answer.startswith("🔎 为什么是「正面」？（正面概率 0.90）")
    assert "• 「但是演唱会太棒了！」把分数推向正面（拿掉它：0.90 → 0.10）" in answer

    # The text lived in memory only: once it is gone, the console says it cannot explain.
    scripted_engine.service.recent.forget(ME)
    [record] = await run_jsonl(scripted_engine, ["/mood why"])
    assert record["text"] == texts.why_no_text(30)


async def test_week_answers_with_text_and_a_chart(
    scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    scripted_engine.runner.reply_text = "A calm week. One happy day."
    output, _ = await run_console(
        scripted_engine, ["I am so happy today", "/mood week"], chart_dir=tmp_path
    )
    record = json.loads(output.splitlines()[-1])
    assert record["command"] == "mood"
    assert record["text"].startswith(
        "📅 Your week\n\nIn the last 7 days you sent 1 message (1 positive), 100% "
        "positive. A calm week.\n\n😄 1"
    )
    chart = Path(record["chart"])
    assert chart.read_bytes().startswith(b"\x89PNG")


async def test_digest_on_is_stored_and_off_removes_it(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["/digest on"])
    assert "every Sunday at 20:00 (UTC)" in records[0]["text"]
    store = scripted_engine.store
    assert await store.digest_subscriptions(PLATFORM) == [DigestSubscription(ME, "console")]
    records = await run_jsonl(scripted_engine, ["/digest off", "/digest"])
    assert [r["text"] for r in records] == [texts.DIGEST_OFF, texts.DIGEST_USAGE]
    assert await store.digest_subscriptions(PLATFORM) == []
