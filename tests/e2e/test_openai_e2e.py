"""`python -m bot` with BACKEND=openai: the same bot on a serving engine, by one setting.

The model session runs the console chat on `python -m llama_cpp.server`; the start-up checks
run against the loopback fake (they fail before any model work).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from engine.model.model_files import LIGHT_MODEL
from tests.fakes.openai_api import FakeOpenAIServer
from tests.llama_server import LlamaServer

ROOT = Path(__file__).resolve().parents[2]
EXIT_MODEL = 3


def bot_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_PATH": str(tmp_path / "bot.db"),
           "BACKEND": "openai", "MODEL": LIGHT_MODEL, **settings}  # fmt: skip
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "OPENAI_API_KEY", "OPENAI_MODEL"):
        if key not in settings:
            env.pop(key, None)
    return env


async def run_bot(tmp_path: Path, env: dict[str, str], lines: list[str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--jsonl", "--user", "e2e",
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdin = ("\n".join(lines) + "\n").encode() if lines else b""
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout=900)
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def server(shared_llama_server: LlamaServer) -> LlamaServer:
    return shared_llama_server  # one per session (tests/conftest.py)


@pytest.mark.model
async def test_console_chat_on_a_llama_cpp_server(tmp_path: Path, server: LlamaServer) -> None:
    # 24 tokens: that there is a reply is tested, not its length (each token costs CPU time).
    env = bot_env(tmp_path, OPENAI_BASE_URL=server.url, MAX_NEW_TOKENS="24")
    lines = [
        "今天的实验终于成功了，太棒了！",
        "I lost my wallet and missed the last train home.",
        "/mood",
    ]
    code, out, err = await run_bot(tmp_path, env, lines)
    assert code == 0, err
    assert "Traceback" not in err
    assert f"at {server.url}" in err  # the log names where the model runs
    happy, sad, mood = (json.loads(line) for line in out.splitlines())
    assert happy["sentiment"] == "positive"
    assert sad["sentiment"] == "negative"
    for answer in (happy, sad):
        assert answer["reply"].strip()
        assert 0 < answer["ms"]["sentiment"] <= answer["ms"]["first_token"] <= answer["ms"]["total"]
    assert "正面 1" in mood["text"]
    assert "负面 1" in mood["text"]


async def test_an_unreachable_server_stops_the_bot_with_the_url(tmp_path: Path) -> None:
    async with FakeOpenAIServer() as fake:
        url = fake.url  # closed on leaving: nothing listens there any more
    code, _, err = await run_bot(tmp_path, bot_env(tmp_path, OPENAI_BASE_URL=url), [])
    assert code == EXIT_MODEL
    assert url in err
    assert "OPENAI_BASE_URL" in err
    assert "Traceback" not in err


async def test_a_refused_key_stops_the_bot_naming_the_key_only(tmp_path: Path) -> None:
    async with FakeOpenAIServer(api_key="the-right-one") as fake:
        env = bot_env(tmp_path, OPENAI_BASE_URL=fake.url, OPENAI_API_KEY="sk-WRONG-SECRET")
        code, _, err = await run_bot(tmp_path, env, [])
    assert code == EXIT_MODEL
    assert "OPENAI_API_KEY" in err
    assert "401" in err
    assert "WRONG-SECRET" not in err
    assert "Traceback" not in err
