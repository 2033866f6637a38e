"""`python -m bot chat` on the real model (llama.cpp): /mood why explains a label from the
model's own scores, and /mood week is written by the model, end to end in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat import texts

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


def test_why_and_week_on_the_real_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra is not installed")
    env = {**os.environ, "DATABASE_PATH": str(tmp_path / "bot.db"), "MAX_NEW_TOKENS": "40",
           "PYTHONPATH": str(ROOT), "BACKEND": "llama_cpp",
           # On a loaded machine the summary's 120 tokens can outlast the default 120 s, and
           # the template would stand in: this test is about what the model writes.
           "REQUEST_TIMEOUT_S": "900"}  # fmt: skip
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        env.pop(key, None)
    lines = [
        "The hotel was lovely, but the flight home was a nightmare.",
        "/mood why",
        "/mood week",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--user", "e2e"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    message, why, week = (json.loads(line) for line in done.stdout.splitlines())
    assert message["sentiment"] == "negative"
    assert why["text"].startswith(f"🔎 Why “negative”? (p positive {message['p_positive']:.2f})")
    # The packaged model puts the blame on the flight (bench.why: a shift of about -0.9).
    assert "“but the flight home was a nightmare.” pulled the score towards negative" in why["text"]
    assert week["text"].startswith("📅 Your week\n\n")
    assert texts.WEEK_FALLBACK_NOTE["en"] not in week["text"]  # the model wrote it
    assert Path(week["chart"]).read_bytes().startswith(b"\x89PNG")
