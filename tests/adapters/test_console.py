"""ConsoleAdapter over io.StringIO on the scripted engine: JSONL and interactive modes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.console import CHAT_ID, PLATFORM, ConsoleAdapter, ConsoleConfig
from engine.chat import safety, texts
from engine.types import Sentiment, UserKey
from tests.conftest import ScriptedEngine

HANG = 10.0
ME = UserKey(PLATFORM, "local")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def run_console(
    engine: ScriptedEngine, lines: list[str], jsonl: bool = True, **config: Any
) -> tuple[str, ConsoleAdapter]:
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    stdout = io.StringIO()
    adapter = ConsoleAdapter(
        engine.service, ConsoleConfig(jsonl=jsonl, **config), stdin=stdin, stdout=stdout
    )
    await adapter.start()
    try:
        await asyncio.wait_for(adapter.finished.wait(), HANG)
    finally:
        await adapter.stop()
    return stdout.getvalue(), adapter


async def run_jsonl(engine: ScriptedEngine, lines: list[str]) -> list[dict[str, Any]]:
    output, _ = await run_console(engine, lines)
    return [json.loads(line) for line in output.splitlines()]


# --- JSONL ----------------------------------------------------------------------------------


async def test_one_json_object_per_message(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["I am so happy today", "my cat is sick"])
    assert len(records) == 2
    for record in records:
        assert set(record) == {"sentiment", "p_positive", "neutral", "reply", "finished", "ms"}
        assert set(record["ms"]) == {"sentiment", "first_token", "total"}
        assert all(isinstance(value, int | float) for value in record["ms"].values())
        assert record["ms"]["sentiment"] <= record["ms"]["first_token"] <= record["ms"]["total"]
        assert record["finished"] is True
    happy, sad = records
    assert (happy["sentiment"], happy["p_positive"]) == ("positive", 0.9)
    assert happy["reply"] == "A cheerful reply to: I am so happy today"
    assert (sad["sentiment"], sad["p_positive"]) == ("negative", 0.1)
    assert sad["reply"] == "A comforting reply to: my cat is sick"
    # Both exchanges went to the console user's own record.
    assert len(await scripted_engine.store.mood_events(ME, EPOCH)) == 2
    assert len(await scripted_engine.store.recent_turns(ME, CHAT_ID, 10)) == 4


async def test_unicode_is_written_as_is(scripted_engine: ScriptedEngine) -> None:
    output, _ = await run_console(scripted_engine, ["今天好开心"])
    assert "今天好开心" in output
    assert json.loads(output)["reply"] == "A cheerful reply to: 今天好开心"


async def test_empty_line_gives_an_error_object(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["", "   "])
    assert records == [{"error": "empty", "text": texts.EMPTY_MESSAGE}] * 2
    assert await scripted_engine.store.mood_events(ME, EPOCH) == []


async def test_a_model_failure_gives_an_error_object_with_the_label(
    scripted_engine: ScriptedEngine,
) -> None:
    scripted_engine.runner.fail_reply_at = 1
    (record,) = await run_jsonl(scripted_engine, ["I love it"])
    assert record == {
        "error": "model_error",
        "text": texts.MODEL_ERROR,
        "sentiment": "positive",
        "p_positive": 0.9,
        "neutral": False,
    }


async def test_mood_command(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["I am so happy", "/mood", "/mood 30", "/mood 0"])
    assert records[1] == {"command": "mood", "text": records[1]["text"]}
    report = await scripted_engine.service.mood(ME, 7)
    assert report.total == 1
    assert records[1]["text"] == report.text
    assert records[2]["command"] == "mood"
    assert records[2]["text"] == (await scripted_engine.service.mood(ME, 30)).text
    assert records[3] == {"command": "mood", "text": texts.bad_days("0")}


async def test_other_commands(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["/help", "/start", "/bogus", "/RESET"])
    assert records == [
        {"command": "help", "text": texts.help_text()},
        {"command": "start", "text": texts.start_text(12)},
        {"command": "bogus", "text": texts.UNKNOWN_COMMAND},
        {"command": "reset", "text": texts.RESET_DONE},
    ]


async def test_reset_clears_the_conversation(scripted_engine: ScriptedEngine) -> None:
    await run_jsonl(scripted_engine, ["hello", "/reset"])
    assert await scripted_engine.store.recent_turns(ME, CHAT_ID, 10) == []
    assert len(await scripted_engine.store.mood_events(ME, EPOCH)) == 1


async def test_forget_needs_confirm(scripted_engine: ScriptedEngine) -> None:
    store = scripted_engine.store
    records = await run_jsonl(scripted_engine, ["I am happy", "/forget"])
    assert records[1]["command"] == "forget"
    assert texts.FORGET_ASK in records[1]["text"]
    assert "/forget confirm" in records[1]["text"]
    assert len(await store.mood_events(ME, EPOCH)) == 1  # nothing deleted yet
    assert len(await store.recent_turns(ME, CHAT_ID, 10)) == 2

    (record,) = await run_jsonl(scripted_engine, ["/forget confirm"])
    assert record["command"] == "forget"
    assert record["text"].startswith("已删除")
    assert "rows" in record["text"]
    assert await store.mood_events(ME, EPOCH) == []
    assert await store.recent_turns(ME, CHAT_ID, 10) == []


async def test_finished_is_set_at_eof(scripted_engine: ScriptedEngine) -> None:
    output, adapter = await run_console(scripted_engine, [])
    assert adapter.finished.is_set()
    assert output == ""


async def test_quit_stops_reading(scripted_engine: ScriptedEngine) -> None:
    records = await run_jsonl(scripted_engine, ["hello", "/quit", "never read"])
    assert len(records) == 1
    assert scripted_engine.runner.tag_calls == [["hello"]]


async def test_stop_cancels_a_console_waiting_for_input(scripted_engine: ScriptedEngine) -> None:
    waiting = threading.Event()  # the console asked for its second line
    typed = threading.Event()  # never set while the console runs: the user typed nothing more

    class OneLineThenSilence(io.StringIO):
        lines_read = 0

        def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
            self.lines_read += 1
            if self.lines_read == 1:
                return "hello\n"
            waiting.set()
            typed.wait(6 * HANG)  # outlasts the wait for stop() below
            return ""

    stdin, stdout = OneLineThenSilence(), io.StringIO()
    adapter = ConsoleAdapter(
        scripted_engine.service, ConsoleConfig(jsonl=True), stdin=stdin, stdout=stdout
    )
    await adapter.start()
    try:
        assert await asyncio.to_thread(waiting.wait, HANG)
        assert not adapter.finished.is_set()  # blocked on input, not ended
        # asyncio.wait, not wait_for: cancelling stop() on a timeout would cancel the loop.
        stopping = asyncio.create_task(adapter.stop())
        done, _ = await asyncio.wait({stopping}, timeout=HANG)
        assert done == {stopping}, "stop() did not end a console waiting for input"
        assert adapter.finished.is_set()
    finally:
        typed.set()  # lets the reading thread return
    assert stdin.lines_read == 2
    (record,) = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert record["reply"] == "A comforting reply to: hello"


# --- interactive ----------------------------------------------------------------------------


async def test_interactive_shows_the_label_before_the_reply(
    scripted_engine: ScriptedEngine,
) -> None:
    output, _ = await run_console(scripted_engine, ["I am so happy today", "/quit"], jsonl=False)
    label = texts.label_line(Sentiment("positive", 0.9))
    reply = "A cheerful reply to: I am so happy today"
    assert texts.help_text() in output
    assert label in output
    assert reply in output
    assert output.index(label) < output.index(reply)
    assert f"{label}\n🤖 {reply}\n" in output


async def test_interactive_failure_and_mood_chart(
    scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    output, _ = await run_console(
        scripted_engine, ["", "I am happy", "/mood"], jsonl=False, chart_dir=tmp_path
    )
    assert f"⚠️  {texts.EMPTY_MESSAGE}" in output
    chart = tmp_path / "mood-local.png"
    assert chart.is_file()
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert f"📈 {chart}" in output


async def test_jsonl_says_when_a_message_is_shown_as_neutral(
    scripted_engine: ScriptedEngine,
) -> None:
    small_talk, happy = await run_jsonl(scripted_engine, ["你好", "I am so happy today"])
    assert small_talk["neutral"] is True
    # The two-way label stays, as the runner gave it (the scripted "你好" reads 0.55).
    assert (small_talk["sentiment"], small_talk["p_positive"]) == ("positive", 0.55)
    assert happy["neutral"] is False


async def test_message_text_never_reaches_the_logs_at_info(
    scripted_engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "zebra-umbrella-4711"
    caplog.set_level(logging.INFO)  # the bot's level; DEBUG is off
    await run_jsonl(scripted_engine, [f"{secret} I am so happy", f"{secret} 今天很难过"])
    scripted_engine.runner.fail_tag = True  # a failure is logged with its traceback
    records = await run_jsonl(scripted_engine, [f"{secret} once more"])
    assert records[0]["error"] == "model_error"
    assert "tagging failed" in caplog.text
    logged = [caplog.text, *(r.getMessage() + (r.exc_text or "") for r in caplog.records)]
    assert not any(secret in text for text in logged)


# --- the support note (engine/chat/safety.py) -----------------------------------------------------


async def test_the_console_is_private_the_note_follows_the_reply(
    scripted_engine: ScriptedEngine,
) -> None:
    crisis = "I don't want to be alive anymore."
    happy, sad = await run_jsonl(scripted_engine, ["I am so happy today", crisis])
    assert "support" not in happy
    assert sad["reply"] == safety.CARING_REPLY["en"]  # the scripted reply reads as no care
    assert sad["support"] == safety.support_note("words", crisis)

    output, _ = await run_console(scripted_engine, ["我真的不想活了。"], jsonl=False)
    reply_at = output.index(safety.CARING_REPLY["zh"])
    note_at = output.index(safety.support_note("words", "我真的不想活了。"))
    assert reply_at < note_at
    notes = await scripted_engine.store.support_notes(ME, EPOCH)
    assert [n.trigger for n in notes] == ["words", "words"]


async def test_interactive_shows_the_replacement_of_a_streamed_refusal(
    scripted_engine: ScriptedEngine,
) -> None:
    scripted_engine.runner.reply_text = "I'm sorry, but I can't help with that."
    output, _ = await run_console(scripted_engine, ["I failed my exam."], jsonl=False)
    # The streamed refusal is followed by what replaced it (platforms edit it away instead).
    assert f"\n🤖 {safety.GENTLE_REPLY['en']}\n" in output
