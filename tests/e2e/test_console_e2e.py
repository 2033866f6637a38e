"""`python -m bot chat` in JSONL mode, end to end in a subprocess on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.model.model_files import DEFAULT_MODEL, LIGHT_MODEL
from tests.support import console_session

pytestmark = pytest.mark.model


@pytest.mark.parametrize("backend", ["transformers", "llama_cpp"])
def test_jsonl_session_on_the_real_model(tmp_path: Path, backend: str) -> None:
    if backend == "llama_cpp":
        pytest.importorskip("llama_cpp", reason="the llama extra is not installed")
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
    # llama.cpp runs the default tier, as `make run` does; transformers the light tier (its
    # one-time bf16 conversion of the default is ~3 GB and minutes: README "Model tiers").
    model = DEFAULT_MODEL if backend == "llama_cpp" else LIGHT_MODEL
    # 24 tokens: that there is a reply is tested, not its length (each token costs CPU time).
    out = console_session(tmp_path, lines, MAX_NEW_TOKENS="24", BACKEND=backend, MODEL=model)
    records = [json.loads(line) for line in out.splitlines()]
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
