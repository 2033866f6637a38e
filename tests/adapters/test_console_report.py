"""/mood report in the console: the PDF is written to the data folder and its path printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.chat import texts
from tests.adapters import test_console
from tests.adapters.test_console import run_console
from tests.conftest import ScriptedEngine
from tests.engine.chat.test_report import pdf_pages


@pytest.fixture(autouse=True)
def drawing_takes_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # run_console's hang guard: matplotlib's first PDF takes seconds on a loaded machine.
    monkeypatch.setattr(test_console, "HANG", 120.0)


async def test_the_report_is_written_where_the_console_says(
    scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    lines = ["I am so happy today", "/mood report 14"]
    output, _ = await run_console(scripted_engine, lines, chart_dir=tmp_path)
    _, answer = [json.loads(line) for line in output.splitlines()]
    [path] = [Path(p) for p in answer["files"]]
    assert path.parent == tmp_path
    assert path.name.endswith("-14d.pdf")
    assert answer["text"].startswith(texts.report_caption(14, 1))
    assert str(path) in answer["text"]
    assert "1 message: Positive 1 (100%)" in " ".join(pdf_pages(path.read_bytes()))


async def test_interactive_report_prints_the_path(
    scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    output, _ = await run_console(
        scripted_engine, ["hello there", "/mood report"], jsonl=False, chart_dir=tmp_path
    )
    saved = [line for line in output.splitlines() if "已保存 (saved): " in line]
    assert len(saved) == 1
    path = Path(saved[0].split(": ", 1)[1])
    assert path.suffix == ".pdf"
    assert path.read_bytes().startswith(b"%PDF")
