"""The Telegram webhook served on a listening socket the test bound itself, so no port is
chosen free and then bound again by someone else (another test, another helper's process).

python-telegram-bot's `Updater.start_webhook(unix=...)` serves on a given socket, and a bound
TCP socket works as well as a Unix one; the adapter asks for the configured host and port,
which the socket is bound to and stands in for. A bot subprocess (tests.scripted_bot) inherits
the socket as the file descriptor named by SCRIPTED_WEBHOOK_FD.
"""

from __future__ import annotations

import socket
from typing import Any

from telegram.ext import Updater


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1 at a port of the kernel's choosing (`.getsockname()`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)  # tornado's accept loop expects it
    return sock


def serve_webhooks_on(sock: socket.socket) -> Any:
    """Make every `Updater.start_webhook` in this process serve on `sock`; returns the
    replaced method (a test's monkeypatch restores it by itself)."""
    original = Updater.start_webhook

    async def start_webhook(self: Updater, **kwargs: Any) -> Any:
        # PTB takes either a socket or where to listen; the adapter asked for the address
        # the socket is bound to (the configured TELEGRAM_WEBHOOK_LISTEN).
        asked = (kwargs.pop("listen"), kwargs.pop("port"))
        if asked != sock.getsockname()[:2]:
            raise AssertionError(f"the webhook was to listen on {asked}, not the test's socket")
        return await original(self, unix=sock, **kwargs)

    Updater.start_webhook = start_webhook  # type: ignore[method-assign,assignment]
    return original
