"""`python -m bot chat` in JSONL mode, end to end in a subprocess on the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["transformers", "llama_cpp"])
def test_jsonl_session_on_the_real_model(tmp_path: Path, backend: str) -> None:
    if backend == "llama_cpp":
        pytest.importorskip("llama_cpp", reason="the llama extra is not installed")
    db = tmp_path / "bot.db"
    env = {**os.environ, "DATABASE_PATH": str(db), "MAX_NEW_TOKENS": "60", "PYTHONPATH": str(ROOT),
           "BACKEND": backend}  # fmt: skip
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        env.pop(key, None)
    lines = [
        "今天的实验终于成功了，太棒了！",
        "I lost my wallet and missed the last train home.",
        "   ",
        "/mood",
        "/nonsense",
        "/forget",
        "/forget confirm",
        "/mood",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--user", "e2e"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # no .env from the repo can leak in
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == len(lines)

    happy, sad, empty, mood, unknown, ask, deleted, after = records
    assert happy["sentiment"] == "positive"
    assert happy["p_positive"] > 0.5
    assert sad["sentiment"] == "negative"
    assert sad["p_positive"] < 0.5
    for answer in (happy, sad):
        assert answer["reply"].strip()
        assert set(answer["ms"]) == {"sentiment", "first_token", "total"}
        assert 0 < answer["ms"]["sentiment"] <= answer["ms"]["first_token"] <= answer["ms"]["total"]
    assert empty["error"] == "empty"
    assert mood["command"] == "mood"
    assert "正面 1" in mood["text"]
    assert "负面 1" in mood["text"]
    assert Path(mood["chart"]).read_bytes().startswith(b"\x89PNG")
    assert unknown["command"] == "nonsense"
    assert "/help" in unknown["text"]
    assert "confirm" in ask["text"]
    assert "7 rows" in deleted["text"]  # 2 mood events + 4 turns + the user row
    assert after["command"] == "mood"
    assert "正面 1" not in after["text"]
