"""`python -m bot doctor`: one screen saying what the bot would run on, and whether it could.

Each check is a plain `Check`, gathered by `diagnose` and printed by `render`, so tests read the
findings rather than the screen. Nothing here prints a secret: tokens and passwords appear as
"set (N chars)", database URLs without their password.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.app import EXIT_MODEL, EXIT_STORAGE
from bot.settings import Settings, SettingsError, environment
from engine.errors import ModelLoadError, StorageError
from engine.model import model_files
from engine.model.backends import choose_backend
from engine.model.label_head import HEADS_DIR, UNCALIBRATED, ModelIdentity, head_for, model_identity
from engine.model.model_files import (
    DEFAULT_MODEL,
    LIGHT_MODEL,
    MODEL_ALIASES,
    names_a_gguf,
    packaged_model,
)
from storage.store import SqlMoodStore
from storage.target import DatabaseTarget

EXIT_SETTINGS = 1  # what `python -m bot` returns on a bad setting
SERVER_TIMEOUT_S = 3.0
DATABASE_TIMEOUT_S = 10.0
PREPARE = "run `python -m bot prepare` (else the bot does it when it starts)"
# Webhook mode is TELEGRAM_WEBHOOK_URL with these two; without the URL they go unused.
_LISTEN, _SECRET = "TELEGRAM_WEBHOOK_LISTEN", "TELEGRAM_WEBHOOK_SECRET"
# Its default, 127.0.0.1:8080, is reachable only from this host (a local reverse proxy).
_LISTEN_FIX = f"{_LISTEN} is unset, so only this host reaches it: set e.g. 0.0.0.0:8080 if needed"
GIB = 1 << 30
# What the default tier needs to answer at a companion's pace: its peak memory per backend
# (measured on the 2-core reference machine, README "Model tiers") with room for the OS and
# the bot, and two cores (one core makes a reply several seconds slower).
DEFAULT_TIER_MEMORY_GIB = {"llama_cpp": 4, "transformers": 8}
DEFAULT_TIER_CORES = 2


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool  # False: the bot could not start
    detail: str  # what was found
    fix: str = ""  # one line: what to do (a problem's fix, or advice on a passing check)
    exit_code: int = 0  # what `python -m bot` would exit with, for a problem


def problem(name: str, detail: str, fix: str, exit_code: int) -> Check:
    return Check(name, False, detail, fix, exit_code)


async def diagnose(env: Mapping[str, str]) -> list[Check]:
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        return _settings_problems(env, error)
    return [
        Check("settings", True, "every value is valid"),
        _backend(settings),
        *await _model(settings, env),
        await _database(settings),
        *_platforms(settings, env),
    ]


def exit_code(checks: list[Check]) -> int:
    """What `python -m bot` would exit with, or 0. It reads the settings (1), opens the
    database (2), then loads the model (3), so the first problem it meets has the least code."""
    return min((check.exit_code for check in checks if not check.ok), default=0)


def render(checks: list[Check]) -> str:
    lines = ["python -m bot doctor (settings from the environment and ./.env)", ""]
    for check in checks:
        mark = "FAIL" if not check.ok else "note" if check.fix else "ok"
        lines.append(f"  {mark:<4} {check.name:<9} {check.detail}")
        if check.fix:
            lines.append(f"  {'':<4} {'':<9} -> {check.fix}")
    problems = sum(not check.ok for check in checks)
    lines.append("")
    if problems:
        lines.append(f"{problems} problem(s): the bot cannot start (exit {exit_code(checks)}).")
    else:
        lines.append("No problems: `python -m bot` can start.")
    return "\n".join(lines)


def main(env: Mapping[str, str] | None = None, *, quiet: bool = False) -> int:
    """`quiet` is for a container's health check, run every minute: nothing is printed when
    the bot can start, and only the problems (on stderr, where runtimes keep it) otherwise."""
    checks = asyncio.run(diagnose(environment() if env is None else env))
    code = exit_code(checks)
    if not quiet:
        print(render(checks))
    elif code:
        print(render([check for check in checks if not check.ok]), file=sys.stderr)
    return code


# --- the checks ----------------------------------------------------------------------------


def _settings_problems(env: Mapping[str, str], error: SettingsError) -> list[Check]:
    """Every group's bad values: Settings.from_env stops at the first group that fails."""
    messages = []
    for group in Settings.groups():
        try:
            group.from_env(env)
        except SettingsError as bad:
            messages.append(str(bad))
    fix = "correct it in .env or the environment (.env.example documents every key)"
    checks = [problem("settings", text, fix, EXIT_SETTINGS) for text in messages or [str(error)]]
    later = "the backend, model, database and platforms are checked once the settings are valid"
    return [*checks, Check("others", True, later, "fix the settings, then run the doctor again")]


def _backend(settings: Settings) -> Check:
    config = settings.model
    backend = choose_backend(config)
    llama_installed = importlib.util.find_spec("llama_cpp") is not None
    if config.backend != "auto":
        why = f"BACKEND={config.backend}"
    elif backend == "llama_cpp":
        why = f"BACKEND=auto: llama.cpp is installed and MODEL={config.model} is a GGUF"
    elif not names_a_gguf(config.model):
        why = f"BACKEND=auto: MODEL={config.model} is not a GGUF, which llama.cpp needs"
    elif config.sentiment_method != "logits":
        why = "BACKEND=auto: SENTIMENT_METHOD=generate needs transformers"
    else:
        why = "BACKEND=auto: llama.cpp is not installed (`make install-llama` adds it; faster)"
    detail = f"{backend} ({why})"
    if backend == "llama_cpp" and not llama_installed:
        fix = "run `make install-llama`, or set BACKEND=auto to run on transformers"
        return problem("backend", detail + ", but llama_cpp is not installed", fix, EXIT_MODEL)
    if backend == "llama_cpp" and not names_a_gguf(config.model):
        fix = f"set MODEL={DEFAULT_MODEL} or a .gguf path, or BACKEND=transformers"
        return problem("backend", detail + ", but llama.cpp reads only GGUF files", fix, EXIT_MODEL)
    return Check("backend", True, detail)


async def _model(settings: Settings, env: Mapping[str, str]) -> list[Check]:
    config = settings.model
    spec = config.model.strip() or DEFAULT_MODEL
    backend = choose_backend(config)
    checks = [_model_file(spec, config.cache_dir)]
    if backend != "openai" and checks[0].ok:
        checks.append(labels_check(model_identity(spec, config.cache_dir)))
    if packaged_model(spec) is not None and backend != "openai":
        # As written (the settings fill in the default): an unset MODEL is said as such.
        written = env.get("MODEL", "")
        checks.append(tier_check(written, backend, _memory_bytes(), _cores()))
    if backend == "openai":
        checks.append(await _server(settings))
    elif backend == "transformers" and checks[0].ok and names_a_gguf(spec):
        checks.append(_conversion(spec, config.cache_dir))
    return checks


def labels_check(model: ModelIdentity, folder: Path = HEADS_DIR) -> Check:
    """Whether the model's labels will be calibrated, with the nothing-felt readout that shows
    plain facts and greetings as neutral (both are package data fitted for that one model)."""
    head = head_for(model, folder)
    if head is UNCALIBRATED:
        return Check(
            "labels",
            True,
            f"no label head fits {model.name}: confidences are uncalibrated and nothing is "
            "shown as neutral",
            "use a packaged model, or fit a head for this one (docs/accuracy.md)",
        )
    readout = "with" if head.nothing_felt is not None else "WITHOUT"
    detail = f"the head fitted for {model.name}, {readout} its nothing-felt readout"
    if head.nothing_felt is None:
        return Check("labels", True, detail, "reinstall the bot: its .felt.npz file is missing")
    return Check("labels", True, detail)


def _conversion(spec: str, cache_dir: Path) -> Check:
    """transformers dequantises a GGUF on every load, so it runs on a one-time conversion."""
    packaged = packaged_model(spec)
    gguf = cache_dir / f"{packaged.name}.gguf" if packaged else Path(spec).expanduser()
    if model_files.is_converted(gguf, cache_dir):
        folder = model_files.converted_folder(gguf, cache_dir)
        return Check("convert", True, f"converted for transformers in {folder}")
    return Check("convert", True, "not yet converted for transformers (about a minute)", PREPARE)


def tier_check(model: str, backend: str, memory_bytes: int, cores: int) -> Check:
    """Which packaged tier runs and why, and whether this machine is big enough for the
    default one (the light tier is the fix when it is not)."""
    spec = model.strip()
    chosen = packaged_model(spec)
    assert chosen is not None
    why = (
        "MODEL is unset"
        if not spec
        else f"MODEL={spec}"
        + (f" (another name of {MODEL_ALIASES[spec]})" if spec in MODEL_ALIASES else "")
    )
    detail = f"the {chosen.tier} tier, {chosen.name} ({why})"
    if chosen.spec != DEFAULT_MODEL:
        return Check("tier", True, detail, f"MODEL={DEFAULT_MODEL} answers better where it fits")
    need_gib = DEFAULT_TIER_MEMORY_GIB.get(backend, DEFAULT_TIER_MEMORY_GIB["llama_cpp"])
    short = []
    if memory_bytes and memory_bytes < need_gib * GIB:
        have = memory_bytes / GIB
        short.append(f"{have:.1f} GiB of memory (it wants {need_gib} GiB on {backend})")
    if cores < DEFAULT_TIER_CORES:
        short.append(f"{cores} core(s) (it wants {DEFAULT_TIER_CORES})")
    if short:
        fix = f"set MODEL={LIGHT_MODEL}, the light tier (about a third of the memory and time)"
        return Check("tier", True, f"{detail}; this machine has only {' and '.join(short)}", fix)
    return Check("tier", True, detail)


def _memory_bytes() -> int:
    """The machine's memory (0 where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _model_file(spec: str, cache_dir: Path) -> Check:
    packaged = packaged_model(spec)
    if packaged is None:
        return _local_model(spec)
    state = model_files.packaged_gguf_state(cache_dir, packaged.spec)
    gguf = cache_dir / f"{packaged.name}.gguf"
    if state == "verified":
        return Check("model", True, f"MODEL={spec}: {gguf} (SHA-256 verified)")
    if state == "wrong size":
        found = f"is {gguf.stat().st_size} bytes, expected {packaged.size} (size mismatch)"
    else:
        found = {
            "missing": "is not yet assembled/verified",
            "unverified": "is assembled but not yet verified",
            "wrong hash": "has a stamp of another SHA-256 than the expected "
            f"{packaged.sha256[:12]}… (hash mismatch)",
        }[state]
    detail = f"MODEL={spec}: {gguf} {found}"
    try:
        model_files.require_parts(packaged)
    except ModelLoadError as error:
        return problem(
            "model",
            f"{detail}, and it cannot be prepared: {error}",
            f"run `{packaged.install}`, then `python -m bot prepare`",
            EXIT_MODEL,
        )
    return Check("model", True, detail, PREPARE)


def _local_model(spec: str) -> Check:
    """A GGUF path, a transformers folder or a hub id (no checksum is known for these)."""
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if path.is_file():
            return Check("model", True, f"MODEL={path} ({path.stat().st_size} bytes)")
        return problem(
            "model",
            f"MODEL={path}: no such GGUF file",
            f"set MODEL to an existing .gguf file, or MODEL={DEFAULT_MODEL}",
            EXIT_MODEL,
        )
    if path.is_dir():
        if (path / "config.json").is_file():
            return Check("model", True, f"MODEL={path} (a transformers checkpoint)")
        return problem(
            "model",
            f"MODEL={path} has no config.json (not a checkpoint)",
            f"point MODEL at a save_pretrained folder, or MODEL={DEFAULT_MODEL}",
            EXIT_MODEL,
        )
    if path.is_absolute() or spec.startswith((".", "~")):
        return problem(
            "model",
            f"MODEL={path} does not exist",
            f"set MODEL to an existing path, or MODEL={DEFAULT_MODEL}",
            EXIT_MODEL,
        )
    return Check(
        "model",
        True,
        f"MODEL={spec}: a Hugging Face hub id",
        "downloaded on first start (needs the network once)",
    )


async def _server(settings: Settings) -> Check:
    """BACKEND=openai: does OPENAI_BASE_URL answer GET /models, and serve OPENAI_MODEL?"""
    remote = settings.openai
    url = f"{remote.base_url}/models"
    headers = {"Authorization": f"Bearer {remote.api_key}"} if remote.api_key else {}
    try:
        async with httpx.AsyncClient(timeout=SERVER_TIMEOUT_S) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as error:
        return problem(
            "server",
            f"{remote.base_url} does not answer ({type(error).__name__})",
            "start the model server, or set OPENAI_BASE_URL to where it listens",
            EXIT_MODEL,
        )
    if response.status_code == 401:
        return problem(
            "server",
            f"{remote.base_url} refused OPENAI_API_KEY (401)",
            "set OPENAI_API_KEY to the key the server expects",
            EXIT_MODEL,
        )
    try:
        response.raise_for_status()
        served = [str(model["id"]) for model in response.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return problem(
            "server",
            f"{url} answered {response.status_code} without a model list",
            "OPENAI_BASE_URL must be the OpenAI API root (usually ending in /v1)",
            EXIT_MODEL,
        )
    wanted = remote.model or (served[0] if served else "")
    if wanted not in served:
        return problem(
            "server",
            f"{remote.base_url} serves {', '.join(served) or 'no model'}",
            "set OPENAI_MODEL to one it serves",
            EXIT_MODEL,
        )
    return Check("server", True, f"{remote.base_url} answers; the bot would use {wanted}")


async def _database(settings: Settings) -> Check:
    target = settings.storage.target
    shown = f"{target.shown} ({target.kind})"
    fix = {
        "sqlite": "set DATABASE_PATH (or DATABASE_URL) to a writable SQLite file",
        "postgresql": "start the server, or correct DATABASE_URL (host, port, user, password)",
    }[target.kind]
    new_file = not _exists(target)
    try:
        opening = SqlMoodStore.open(
            target, pool_size=settings.storage.pool_size, postgres=settings.storage.postgres
        )
        store = await asyncio.wait_for(opening, DATABASE_TIMEOUT_S)
    except TimeoutError:
        return problem(
            "database", f"{shown} did not open within {DATABASE_TIMEOUT_S:.0f} s", fix, EXIT_STORAGE
        )
    except Exception as error:  # noqa: BLE001 - the doctor reports every failure, then goes on
        # StorageError messages are written to be shown; others might quote a URL.
        reason = str(error) if isinstance(error, StorageError) else type(error).__name__
        return problem("database", f"{shown} does not open: {reason}", fix, EXIT_STORAGE)
    await store.close()
    created = " (a new, empty file: created as the bot would)" if new_file else ""
    return Check("database", True, f"{shown} opens{created}")


def _exists(target: DatabaseTarget) -> bool:
    """Whether the database is there before the check opens it (and so creates a SQLite file)."""
    if target.kind != "sqlite" or target.in_memory:
        return True
    return Path(target.location).expanduser().exists()


def _platforms(settings: Settings, env: Mapping[str, str]) -> list[Check]:
    checks = []
    if (telegram := settings.telegram) is not None:
        detail = f"token set ({len(telegram.token)} chars); "
        if telegram.webhook:
            detail += (
                f"webhook {telegram.webhook_url}, listening on {telegram.webhook_listen}, "
                f"secret set ({len(telegram.webhook_secret)} chars)"
            )
            listen = "" if env.get(_LISTEN, "").strip() else _LISTEN_FIX
            checks.append(Check("telegram", True, detail, listen))
        elif stray := [key for key in (_LISTEN, _SECRET) if env.get(key, "").strip()]:
            detail += f"long polling ({' and '.join(stray)} unused without TELEGRAM_WEBHOOK_URL)"
            fix = f"for webhook mode set TELEGRAM_WEBHOOK_URL + {_LISTEN} + {_SECRET} together"
            checks.append(Check("telegram", True, detail, fix + "; else remove them"))
        else:
            checks.append(Check("telegram", True, detail + "long polling"))
    if (discord := settings.discord) is not None:
        triggers = [
            w
            for w, on in (("mention", discord.reply_on_mention), ("reply", discord.reply_on_reply))
            if on
        ]
        detail = f"token set ({len(discord.token)} chars); in servers it replies on " + (
            " and ".join(triggers) or "nothing (DMs only)"
        )
        checks.append(Check("discord", True, detail))
    if not checks:
        checks.append(
            Check(
                "platforms",
                True,
                "none configured: `python -m bot` starts the console chat (not an error)",
                "to connect, set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN",
            )
        )
    return checks
