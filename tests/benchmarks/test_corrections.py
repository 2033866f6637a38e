"""benchmarks.data.corrections: corrected rows out of a real store, in the datasets' format."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.common import read_jsonl
from benchmarks.data import corrections
from engine.chat.commands import Caller, Commands
from engine.chat.journal import fix_data
from engine.chat.service import ChatService
from engine.types import IncomingMessage, UserKey
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine

ALICE = Caller(UserKey("telegram", "42"), "42")


async def test_corrected_rows_with_text_become_labelled_rows(
    scripted_engine: ScriptedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep_text = SYSTEM_LAYOUT.model_copy(update={"store_message_text": True})
    service = ChatService(scripted_engine.worker, scripted_engine.store, keep_text)
    commands = Commands(service)
    for number, text in enumerate(
        ["I am so happy today", "everything went wrong", "what a great day", "fine"], start=1
    ):
        incoming = IncomingMessage("telegram", "42", "42", text, str(number))
        async for _ in service.handle(incoming):
            pass
    await commands.press_correction(ALICE, fix_data("1", "negative"))
    await commands.press_correction(ALICE, fix_data("2", "positive"))
    await commands.press_correction(ALICE, fix_data("3", "neutral"))
    # A message whose text was not kept: counted, never written.
    plain = ChatService(scripted_engine.worker, scripted_engine.store, SYSTEM_LAYOUT)
    async for _ in plain.handle(IncomingMessage("telegram", "42", "42", "so sad", "5")):
        pass
    await commands.press_correction(ALICE, fix_data("5", "positive"))

    out = tmp_path / "corrections.jsonl"
    # The command line, in a thread: it runs its own event loop.
    args = [str(out), "--database", str(scripted_engine.db_path)]
    assert await asyncio.to_thread(corrections.main, args) == 0
    rows = read_jsonl(out)
    assert [(r["text"], r["label"], r["shown"]) for r in rows] == [
        ("I am so happy today", "negative", "positive"),
        ("everything went wrong", "positive", "negative"),
    ]
    printed = capsys.readouterr().out
    assert "wrote 2 rows" in printed
    assert "no text stored" in printed

    with_neutral = tmp_path / "with_neutral.jsonl"
    await corrections.export(str(scripted_engine.db_path), with_neutral, neutral=True)
    assert [r["label"] for r in read_jsonl(with_neutral)] == ["negative", "positive", "neutral"]
