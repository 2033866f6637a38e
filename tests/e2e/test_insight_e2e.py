"""`python -m bot chat` on the real model (llama.cpp): /mood why explains a label from the
model's own scores, and /mood week is written by the model, end to end in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.chat import texts
from engine.model.model_files import LIGHT_MODEL
from tests.support import console_session

pytestmark = pytest.mark.model


def test_why_and_week_on_the_real_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the llama extra is not installed")
    lines = [
        "The hotel was lovely, but the flight home was a nightmare.",
        "/mood why",
        "/mood week",
    ]
    # On a loaded machine the summary's 120 tokens can outlast the default 120 s, and the
    # template would stand in: this test is about what the model writes.
    # The light tier: what it says of this message is known (benchmarks.quality.why).
    out = console_session(tmp_path, lines, MAX_NEW_TOKENS="40", BACKEND="llama_cpp",
                          MODEL=LIGHT_MODEL, REQUEST_TIMEOUT_S="900")  # fmt: skip
    message, why, week = (json.loads(line) for line in out.splitlines())
    assert message["sentiment"] == "negative"
    assert why["text"].startswith(f"🔎 Why “negative”? (p positive {message['p_positive']:.2f})")
    # The packaged model puts the blame on the flight (benchmarks.quality.why: a shift of about
    # -0.9).
    assert "“but the flight home was a nightmare.” pulled the score towards negative" in why["text"]
    assert week["text"].startswith("📅 Your week\n\n")
    assert texts.WEEK_FALLBACK_NOTE["en"] not in week["text"]  # the model wrote it
    assert Path(week["chart"]).read_bytes().startswith(b"\x89PNG")
