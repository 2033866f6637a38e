"""The journal in the console: /wrong corrects the latest label (there are no buttons),
/export writes the CSV and JSON to files and names them, /link gives a code, a code from
another platform links only after `/link confirm`, and /unlink separates linked accounts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.types import IncomingMessage, UserKey
from tests.adapters.test_console import ME, run_console, run_jsonl
from tests.conftest import ScriptedEngine
from tests.support import link_accounts


async def test_wrong_then_mood_counts_the_correction_and_export_writes_files(
    scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    lines = [
        "I am so happy today",
        "/wrong negative",
        "/wrong neutral",  # a second correction of the same label: refused, with why
        "/mood",
        "/export",
        "/link",
    ]
    output, _ = await run_console(scripted_engine, lines, chart_dir=tmp_path)
    _, wrong, again, mood, export, link = [json.loads(line) for line in output.splitlines()]
    assert wrong == {"command": "wrong", "text": texts.correction_done("positive", "negative")}
    assert again["text"] == texts.CORRECTION_ALREADY
    assert "负面 1" in mood["text"]
    assert "正面 0" in mood["text"]
    assert "✎" in mood["text"]

    csv_path, json_path = (Path(p) for p in export["files"])
    assert csv_path.parent == json_path.parent == tmp_path
    assert export["text"].startswith(texts.export_done(1, 1, 2))
    [row] = csv.DictReader(csv_path.open(encoding="utf-8-sig"))
    assert (row["platform"], row["shown"], row["corrected"]) == ("console", "positive", "negative")
    document = json.loads(json_path.read_text())
    assert document["turns"][0]["content"] == "I am so happy today"
    assert "/link " in link["text"]

    report = await scripted_engine.service.mood(ME, 7)
    assert (report.positive, report.negative) == (0, 1)


async def test_interactive_export_prints_where_the_files_are(
    scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    output, _ = await run_console(
        scripted_engine, ["hello there", "/export"], jsonl=False, chart_dir=tmp_path
    )
    saved = [line for line in output.splitlines() if "已保存 (saved): " in line]
    assert len(saved) == 1
    paths = saved[0].split(": ", 1)[1].split(", ")
    assert [Path(p).suffix for p in paths] == [".csv", ".json"]
    assert all(Path(p).exists() for p in paths)


async def test_unlink_separates_the_linked_accounts(scripted_engine: ScriptedEngine) -> None:
    store = scripted_engine.store
    elsewhere = UserKey("telegram", "111")
    await link_accounts(store, elsewhere, ME)
    assert await store.linked_accounts(ME) == [elsewhere]

    records = await run_jsonl(scripted_engine, ["/unlink", "/unlink"])
    assert records == [
        {"command": "unlink", "text": texts.UNLINK_DONE},
        {"command": "unlink", "text": texts.UNLINK_NONE},
    ]
    assert await store.linked_accounts(ME) == []
    assert await store.linked_accounts(elsewhere) == []


async def test_a_telegram_code_asks_first_and_links_on_link_confirm(
    scripted_engine: ScriptedEngine,
) -> None:
    telegram = UserKey("telegram", "42")
    async for _ in scripted_engine.service.handle(
        IncomingMessage("telegram", "42", "42", "I am so happy today", "1")
    ):
        pass
    issued = await Commands(scripted_engine.service).run("link", Caller(telegram, "42"))
    code = issued.text.split("/link ", 1)[1].split()[0][:8]
    lines = ["everything went wrong", f"/link {code}", "/mood", "/link confirm", "/mood"]
    output, _ = await run_console(scripted_engine, lines)
    _, asked, mood_before, linked, mood_after = [json.loads(line) for line in output.splitlines()]
    assert asked["text"] == texts.link_confirm_ask("telegram 42", 10)
    assert "正面 0" in mood_before["text"]  # only the console's own, until confirmed
    assert linked["text"] == texts.linked_text(["telegram 42"])
    assert "正面 1" in mood_after["text"]
    assert "负面 1" in mood_after["text"]
    assert await scripted_engine.store.linked_accounts(ME) == [telegram]
