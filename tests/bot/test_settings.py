"""Settings.from_env: defaults, validation naming the key, and secrets kept out of reprs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError
from engine.chat.config import ChatConfig
from engine.chat.prompts import ReplyLayout
from engine.model.config import ModelConfig, OpenAIConfig, WorkerConfig
from engine.model.model_files import default_cache_dir
from engine.model.runner import RunnerOptions
from engine.types import GenerationParams
from storage.target import DatabaseTarget

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.model.model == "packaged-1.5b"  # the default tier
    assert settings.model.backend == "auto"
    assert settings.model.llama_context_tokens == 8192
    assert settings.model.dtype == "auto"
    assert settings.model.cache_dir == default_cache_dir()
    assert settings.model.threads == 0
    assert settings.model.sentiment_method == "logits"
    assert settings.model.sentiment_max_tokens == 256
    assert settings.model.history_max_tokens == 1024
    assert settings.worker.queue_size == 32
    assert settings.worker.max_active_replies == 8
    assert settings.worker.request_timeout_s == 120.0
    assert settings.chat == ChatConfig()
    # A conversation's defaults (docs/conversations.md): DRY on, the tone in a note, one
    # example per tone; everything else is the dataclass's.
    assert settings.chat.generation == GenerationParams(dry_multiplier=0.8)
    assert settings.chat.layout == ReplyLayout(tone_at="note", examples="mixed")
    assert settings.chat.store_message_text is False
    assert settings.chat.timezone == "UTC"
    assert settings.storage.database_path == Path("data/bot.db")
    assert settings.storage.database_url == ""
    assert settings.storage.target == DatabaseTarget("sqlite", "data/bot.db", "data/bot.db")
    assert settings.storage.pool_size == 10
    assert settings.log_level == "INFO"
    assert settings.telegram is None
    assert settings.discord is None
    # One default per key: the groups built in code agree with an empty environment.
    assert settings.model == ModelConfig()
    assert settings.worker == WorkerConfig()
    assert settings.model.runner_options() == RunnerOptions()
    assert settings.openai == OpenAIConfig()
    assert settings.openai.base_url == "http://127.0.0.1:8000/v1"
    assert settings.openai.api_key == ""
    assert settings.openai.model == ""
    assert settings.openai.server == "auto"
    assert settings.openai.priority is False
    assert settings.openai.top_logprobs == 20


def test_blank_values_mean_default() -> None:
    keys = ["MODEL", "MAX_NEW_TOKENS", "TEMPERATURE", "MODEL_DTYPE", "STORE_MESSAGE_TEXT"]
    keys += ["TIMEZONE", "TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DATABASE_PATH", "LOG_LEVEL"]
    keys += ["DATABASE_URL", "DATABASE_POOL_SIZE"]
    blank = {key: "  " for key in keys}
    assert Settings.from_env(blank) == Settings.from_env({})


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "MODEL": " ./models/qwen ",
            "MODEL_DTYPE": "Float32",
            "MODEL_CACHE_DIR": "~/cache-here",
            "TORCH_THREADS": "4",
            "SENTIMENT_METHOD": "GENERATE",
            "MAX_NEW_TOKENS": "64",
            "TEMPERATURE": "0",
            "TOP_P": "1",
            "TOP_K": "0",
            "REPETITION_PENALTY": "1.2",
            "HISTORY_TURNS": "0",
            "MAX_INPUT_CHARS": "100",
            "STORE_MESSAGE_TEXT": "Yes",
            "TIMEZONE": "Asia/Shanghai",
            "DATABASE_PATH": "/tmp/x.db",
            "LOG_LEVEL": "debug",
            "REQUEST_TIMEOUT_S": "2.5",
            "LLAMA_CONTEXT_TOKENS": "4096",
        }
    )
    assert settings.model.model == "./models/qwen"
    assert settings.model.dtype == "float32"
    assert settings.model.cache_dir == Path("~/cache-here").expanduser()
    assert settings.model.threads == 4
    assert settings.model.sentiment_method == "generate"
    assert settings.chat.generation == GenerationParams(
        max_new_tokens=64,
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        repetition_penalty=1.2,
        dry_multiplier=0.8,  # not set: the chat default
    )
    assert settings.chat.history_turns == 0
    assert settings.chat.max_input_chars == 100
    assert settings.chat.store_message_text is True
    assert settings.chat.timezone == "Asia/Shanghai"
    assert settings.storage.database_path == Path("/tmp/x.db")
    assert settings.log_level == "DEBUG"
    assert settings.worker.request_timeout_s == 2.5
    assert settings.model.llama_context_tokens == 4096


def test_the_llama_cpp_backend_is_chosen_and_checked() -> None:
    assert Settings.from_env({"BACKEND": " Llama_CPP "}).model.backend == "llama_cpp"
    with pytest.raises(SettingsError, match="SENTIMENT_METHOD=generate needs BACKEND"):
        Settings.from_env({"BACKEND": "llama_cpp", "SENTIMENT_METHOD": "generate"})


def test_the_openai_backend_is_one_setting_and_its_server_a_group() -> None:
    settings = Settings.from_env(
        {
            "BACKEND": "OpenAI",
            "OPENAI_BASE_URL": " https://models.internal:8443/v1/ ",
            "OPENAI_API_KEY": "sk-SECRET",
            "OPENAI_MODEL": "Qwen/Qwen2.5-0.5B-Instruct",
            "OPENAI_SERVER": "vLLM",
            "OPENAI_PRIORITY": "true",
            "OPENAI_TOP_LOGPROBS": "5",
        }
    )
    assert settings.model.backend == "openai"
    assert settings.openai.base_url == "https://models.internal:8443/v1"
    assert settings.openai.api_key == "sk-SECRET"
    assert settings.openai.model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert settings.openai.server == "vllm"
    assert settings.openai.priority is True
    assert settings.openai.top_logprobs == 5
    assert "SECRET" not in repr(settings)
    with pytest.raises(SettingsError, match="SENTIMENT_METHOD=generate needs BACKEND"):
        Settings.from_env({"BACKEND": "openai", "SENTIMENT_METHOD": "generate"})


def test_a_bad_openai_value_never_shows_the_key() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"OPENAI_BASE_URL": "localhost:8000", "OPENAI_API_KEY": "sk-SECRET"})
    assert "OPENAI_BASE_URL" in str(caught.value)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("ON", True),
        ("yes", True),
        ("0", False),
        ("False", False),
        ("off", False),
        ("no", False),
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.from_env({"STORE_MESSAGE_TEXT": raw}).chat.store_message_text is expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MAX_NEW_TOKENS", "abc"),
        ("MAX_NEW_TOKENS", "0"),
        ("MAX_NEW_TOKENS", "2049"),
        ("MAX_NEW_TOKENS", "1.5"),
        ("TEMPERATURE", "9"),
        ("TEMPERATURE", "-0.1"),
        ("TEMPERATURE", "warm"),
        ("TOP_P", "1.5"),
        ("TOP_K", "-1"),
        ("REPETITION_PENALTY", "0.5"),
        ("MODEL_DTYPE", "int4"),
        ("MODEL_DTYPE", "float16"),
        ("STORE_MESSAGE_TEXT", "maybe"),
        ("TIMEZONE", "Mars/Base"),
        ("TIMEZONE", "../../etc/passwd"),
        ("HISTORY_TURNS", "201"),
        ("HISTORY_MAX_TOKENS", "-1"),
        ("MAX_INPUT_CHARS", "99"),
        ("SENTIMENT_METHOD", "vibes"),
        ("BACKEND", "onnx"),
        ("LLAMA_CONTEXT_TOKENS", "100"),
        ("SENTIMENT_MAX_TOKENS", "8"),
        ("QUEUE_SIZE", "0"),
        ("MAX_ACTIVE_REPLIES", "65"),
        ("REQUEST_TIMEOUT_S", "0.5"),
        ("REQUEST_TIMEOUT_S", "soon"),
        ("TORCH_THREADS", "-2"),
        ("LOG_LEVEL", "loud"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token"),
        ("DISCORD_EDIT_INTERVAL_S", "0"),
        ("DATABASE_URL", "mysql://root@db/bot"),
        ("DATABASE_URL", "postgresql://bot@db"),
        ("DATABASE_URL", "sqlite://"),
        ("DATABASE_POOL_SIZE", "0"),
        ("OPENAI_BASE_URL", "ftp://models/v1"),
        ("OPENAI_SERVER", "triton"),
        ("OPENAI_PRIORITY", "sometimes"),
        ("OPENAI_TOP_LOGPROBS", "1"),
    ],
)
def test_bad_values_raise_a_settings_error_naming_the_key(key: str, value: str) -> None:
    env = {key: value}
    if key.startswith("DISCORD_"):
        env["DISCORD_BOT_TOKEN"] = "SECRET2"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert key in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "key", ["OPENAI_BASE_URL", "TELEGRAM_API_BASE_URL", "TELEGRAM_API_FILE_URL", "DISCORD_PROXY"]
)
def test_every_url_setting_takes_an_http_url_with_a_host_and_never_echoes_one(key: str) -> None:
    tokens = {"TELEGRAM_BOT_TOKEN": "123:SECRET", "DISCORD_BOT_TOKEN": "SECRET2"}
    good = Settings.from_env({**tokens, key: "http://user:pass@127.0.0.1:3128/v1"})
    assert good.model_dump_json().count("user:pass@127.0.0.1") == 1  # kept as written
    for bad in ("ftp://user:hunter2@host/x", "http://", "127.0.0.1:3128", "http:/x"):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({**tokens, key: bad})
        assert key in str(caught.value)
        assert "hunter2" not in str(caught.value)


def test_a_malformed_telegram_token_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TELEGRAM_BOT_TOKEN": "oops-SECRET-VALUE"})
    assert "SECRET-VALUE" not in str(caught.value)
    assert "SECRET-VALUE" not in repr(caught.value)


@pytest.mark.parametrize(
    ("url", "kind", "location", "shown"),
    [
        ("data/other.db", "sqlite", "data/other.db", "data/other.db"),
        ("sqlite:///data/x.db", "sqlite", "data/x.db", "data/x.db"),
        ("sqlite+aiosqlite:////var/lib/bot.db", "sqlite", "/var/lib/bot.db", "/var/lib/bot.db"),
        ("sqlite:///:memory:", "sqlite", ":memory:", ":memory:"),
        (
            "postgres://bot:pw@db:5432/bot",
            "postgresql",
            "postgresql+asyncpg://bot:pw@db:5432/bot",
            "postgresql://bot:***@db:5432/bot",
        ),
        (
            "postgresql://bot@/bot?host=/run/postgresql&password=pw",
            "postgresql",
            "postgresql+asyncpg://bot@/bot?host=/run/postgresql&password=pw",
            "postgresql://bot@/bot?host=/run/postgresql&password=***",
        ),
    ],
)
def test_database_url_names_the_database_and_wins_over_the_path(
    url: str, kind: str, location: str, shown: str
) -> None:
    storage = Settings.from_env({"DATABASE_URL": url, "DATABASE_PATH": "/elsewhere.db"}).storage
    assert storage.target == DatabaseTarget(kind, location, shown)  # type: ignore[arg-type]


def test_a_bad_database_url_is_not_echoed() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL") as caught:
        Settings.from_env({"DATABASE_URL": "mysql://bot:SECRET-PW@db/bot"})
    assert "SECRET-PW" not in str(caught.value)
    settings = Settings.from_env({"DATABASE_URL": "postgresql://bot:SECRET-PW@db/bot"})
    assert "SECRET-PW" not in repr(settings)


def test_tokens_never_appear_in_repr() -> None:
    settings = Settings.from_env(
        {"TELEGRAM_BOT_TOKEN": "123:SECRET", "DISCORD_BOT_TOKEN": "SECRET2"}
    )
    assert settings.telegram is not None
    assert settings.telegram.token == "123:SECRET"
    assert settings.discord is not None
    assert settings.discord.token == "SECRET2"
    shown = [repr(settings), str(settings), repr(settings.telegram), repr(settings.discord)]
    for text in shown:
        assert "SECRET" not in text


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_NEW_TOKENS", "77")
    monkeypatch.setenv("TIMEZONE", "Europe/Berlin")
    settings = Settings.from_env()
    assert settings.chat.generation.max_new_tokens == 77
    assert settings.chat.timezone == "Europe/Berlin"


def documented_keys() -> dict[str, str]:
    """KEY=value lines of .env.example (the value is the documented default)."""
    documented: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            documented[key.strip()] = value.split(" #")[0].strip()
    return documented


def test_env_example_documents_every_key_and_no_stale_one() -> None:
    documented = documented_keys()
    assert set(documented) == Settings.env_keys()


def test_env_example_documents_the_real_defaults() -> None:
    assert Settings.from_env(documented_keys()) == Settings.from_env({})


def test_the_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("MAX_NEW_TOKENS=55\nTOP_K=7\nTELEGRAM_BOT_TOKEN=1:FROMFILE\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOP_K", "9")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    settings = Settings.from_env()
    assert settings.chat.max_new_tokens == 55
    assert settings.chat.top_k == 9
    assert settings.telegram is not None
    assert settings.telegram.token == "1:FROMFILE"


def test_reading_settings_loads_no_platform_library() -> None:
    # The platform clients cost ~0.45 s to import, SQLAlchemy and its drivers ~0.5 s; a bot
    # with Discord or Telegram unset (and the console, and the benchmarks) must not pay for
    # them just to read its settings.
    heavy = ("discord", "telegram", "aiohttp", "sqlalchemy", "asyncpg")
    probe = (
        "import sys; from bot.settings import Settings; "
        "Settings.from_env({'DISCORD_BOT_TOKEN': 'd', 'TELEGRAM_BOT_TOKEN': '1:t', "
        "'DATABASE_URL': 'postgresql://u:p@h/d'}); "
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
