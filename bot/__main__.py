"""`python -m bot`: start the configured adapters, or the console chat when none is configured.

python -m bot                 # Telegram and/or Discord if their tokens are set, else console
python -m bot chat            # the console chat (JSONL when stdin is not a terminal)
python -m bot chat --jsonl --user alice
python -m bot doctor          # what the bot would run on, and what stops it (exit code)
python -m bot doctor --quiet  # the same exit code, silent unless something stops the bot
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from dotenv import load_dotenv

from adapters.console import ConsoleConfig
from bot.app import EXIT_MODEL, configure_logging, run
from bot.settings import Settings, SettingsError
from engine.model.runner import ModelRunner

log = logging.getLogger("bot")

RunnerFactory = Callable[[], ModelRunner]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="All-in-One Bot: sentiment-aware chat on one local LLM, for Telegram, "
        "Discord and the console. Settings come from the environment and .env "
        "(see .env.example).",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start the configured adapters (the default)")
    sub.add_parser("prepare", help="verify and convert the model into the cache, then exit")
    doctor = sub.add_parser(
        "doctor", help="check the settings, model, database and platforms, then exit"
    )
    doctor.add_argument(
        "--quiet", action="store_true", help="print only problems (a container health check)"
    )
    chat = sub.add_parser("chat", help="chat in the console")
    for target in (parser, chat):
        target.add_argument("--jsonl", action="store_true", help="one JSON object per line")
        target.add_argument("--user", default="local", help="console user id (default: local)")
    return parser.parse_args(argv)


def prepare(settings: Settings) -> int:
    """Get the model ready for the backend that will run it: llama.cpp reads the verified GGUF
    as it is, transformers needs its one-time conversion."""
    from engine.errors import ModelLoadError
    from engine.model.backends import choose_backend
    from engine.model.model_files import resolve_gguf, resolve_model

    config = settings.model
    try:
        if choose_backend(config) == "llama_cpp":
            path, description = resolve_gguf(config.model, config.cache_dir)
            location = str(path)
        else:
            source = resolve_model(config.model, config.cache_dir)
            description, location = source.description, source.location
    except ModelLoadError as error:
        log.error("the model could not be prepared: %s", error)
        return EXIT_MODEL
    print(f"model ready: {description} -> {location}")
    return 0


def main(argv: list[str] | None = None, runner_factory: RunnerFactory | None = None) -> int:
    """`runner_factory` replaces the configured model (tests run bot processes on a script)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The settings read .env themselves; loading it into the environment too lets the
    # libraries see their own variables from it (HF_HUB_OFFLINE, OMP_NUM_THREADS…).
    load_dotenv(Path.cwd() / ".env", override=False)  # the environment wins over .env
    if args.command == "doctor":  # before reading the settings: it reports bad ones itself
        from bot import doctor

        return doctor.main(quiet=args.quiet)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level)
    if args.command == "prepare":
        return prepare(settings)
    platforms = [name for name in ("telegram", "discord") if getattr(settings, name)]
    console = None
    if args.command == "chat" or not platforms:
        if args.command != "chat":
            log.info(
                "no TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN set: starting the console chat "
                "(adapters available: telegram, discord, console)"
            )
        jsonl = args.jsonl or not sys.stdin.isatty()
        chart_dir = settings.storage.files_dir
        console = ConsoleConfig(user_id=args.user, jsonl=jsonl, chart_dir=chart_dir)
        if args.command == "chat":
            settings = settings.model_copy(update={"telegram": None, "discord": None})
    return asyncio.run(run(settings, console, runner_factory))


if __name__ == "__main__":
    sys.exit(main())
