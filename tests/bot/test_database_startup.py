"""`python -m bot` with a database it cannot use stops at once with a clear message (exit
code 2), naming DATABASE_URL without its password; the model is never loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster
from tests.support import refusing_port

pytestmark = pytest.mark.slow  # each starts `python -m bot`, seconds apiece

ROOT = Path(__file__).resolve().parents[2]
EXIT_STORAGE = 2


def run_bot(tmp_path: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DATABASE_PATH"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--jsonl"],
        cwd=tmp_path, env=env, input="", capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_postgres_that_is_down_stops_the_bot_naming_database_url(tmp_path: Path) -> None:
    with refusing_port() as port:
        done = run_bot(tmp_path, f"postgresql://bot:pw-SECRET-1@127.0.0.1:{port}/bot")
    assert done.returncode == EXIT_STORAGE, done.stderr[-2000:]
    assert f"DATABASE_URL (postgresql://bot:***@127.0.0.1:{port}/bot)" in done.stderr
    assert "cannot reach" in done.stderr
    assert "SECRET" not in done.stderr + done.stdout
    assert "loading the model" not in done.stderr


def test_a_wrong_postgres_password_stops_the_bot_naming_database_url(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    done = run_bot(tmp_path, postgres.url(password="pw-SECRET-2"))
    assert done.returncode == EXIT_STORAGE, done.stderr[-2000:]
    assert "DATABASE_URL" in done.stderr
    assert "refused the login" in done.stderr
    assert "SECRET" not in done.stderr + done.stdout
    assert postgres.password not in done.stderr


@pytest.mark.parametrize(
    "url", ["mysql://bot:pw-SECRET-3@db/bot", "postgresql://bot:pw-SECRET-3@db"]
)
def test_a_database_url_of_the_wrong_shape_is_a_configuration_error(
    tmp_path: Path, url: str
) -> None:
    done = run_bot(tmp_path, url)
    assert done.returncode == 1
    assert "configuration error: DATABASE_URL" in done.stderr
    assert "SECRET" not in done.stderr
