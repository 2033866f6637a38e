"""Wiring: open the store, load the model, start the adapters on one loop, stop them in reverse.

All adapters (Telegram, Discord, console) share one event loop, one model worker thread and
one database. SIGINT/SIGTERM (or the console's end of input) begin an orderly shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from adapters.console import ConsoleAdapter, ConsoleConfig
from bot.settings import Settings
from engine.chat.service import ChatService
from engine.errors import ModelLoadError, StorageError
from engine.model.backends import ModelService, choose_backend, model_service
from engine.model.runner import ModelRunner
from engine.model.worker import ModelWorker
from engine.ports import Adapter
from storage.store import SqlMoodStore

log = logging.getLogger("bot")

EXIT_OK = 0
EXIT_STORAGE = 2
EXIT_MODEL = 3
EXIT_ADAPTER = 4


def build_adapters(
    settings: Settings, service: ChatService, console: ConsoleConfig | None
) -> list[Adapter]:
    adapters: list[Adapter] = []
    if settings.telegram is not None:
        from adapters.telegram.adapter import TelegramAdapter

        adapters.append(TelegramAdapter(service, settings.telegram))
    if settings.discord is not None:
        from adapters.discord.adapter import DiscordAdapter

        adapters.append(DiscordAdapter(service, settings.discord))
    if console is not None:
        adapters.append(ConsoleAdapter(service, console))
    return adapters


async def run(
    settings: Settings,
    console: ConsoleConfig | None,
    runner_factory: Callable[[], ModelRunner] | None = None,
) -> int:
    try:
        store = await SqlMoodStore.open(
            settings.storage.target,
            pool_size=settings.storage.pool_size,
            postgres=settings.storage.postgres,
        )
    except StorageError as error:
        log.error("cannot open the database: %s", error)
        return EXIT_STORAGE
    log.info("%s", banner(settings, console, f"{store.shown} ({store.dialect})"))
    # The configured backend's facade: the worker thread on a local runner, or the client of
    # a remote serving engine (BACKEND=openai). Tests pass a runner of their own.
    engine: ModelService = (
        ModelWorker(runner_factory, settings.worker)
        if runner_factory
        else model_service(settings.model, settings.worker, settings.openai)
    )
    try:
        await engine.start()
        log.info("model ready: %s", engine.name)
        service = ChatService(engine, store, settings.chat)
        log.info("reply prompts read in %.1f s", await service.warm_up())
        return await _serve(build_adapters(settings, service, console))
    except ModelLoadError as error:
        log.error("the model could not be loaded: %s", error)
        return EXIT_MODEL
    finally:
        await engine.stop()
        await store.close()


def banner(settings: Settings, console: ConsoleConfig | None, database: str) -> str:
    """One line saying what this run is: backend, model, database and platforms."""
    backend = choose_backend(settings.model)
    model = settings.model.model
    if backend == "openai":
        served = settings.openai.model or "the first model it serves"
        model = f"{served} at {settings.openai.base_url} (tokenizer: {model})"
    platforms = []
    if settings.telegram is not None:
        mode = "webhook" if settings.telegram.webhook else "long polling"
        platforms.append(f"telegram ({mode})")
    if settings.discord is not None:
        platforms.append("discord")
    if console is not None:
        platforms.append("console")
    return (
        f"starting: backend {backend}, model {model}, database {database}, "
        f"platforms {', '.join(platforms)}; loading the model…"
    )


async def _serve(adapters: list[Adapter]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started: list[Adapter] = []
    waiters: list[asyncio.Task[None]] = []  # referenced so they are not collected early
    code = EXIT_OK
    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
            log.info("%s adapter running", adapter.name)
            if isinstance(adapter, ConsoleAdapter):
                waiter = asyncio.create_task(_set_when(adapter.finished, stop))
                waiters.append(waiter)
        await stop.wait()
        log.info("shutting down")
    except Exception as error:  # noqa: BLE001 - an adapter that cannot start ends the run
        log.error("an adapter failed to start: %s", error)
        code = EXIT_ADAPTER
    finally:
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("%s adapter did not stop cleanly", adapter.name)
        for waiter in waiters:
            waiter.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return code


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs request URLs at INFO, and Telegram URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for noisy in ("transformers", "urllib3", "discord.gateway"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
