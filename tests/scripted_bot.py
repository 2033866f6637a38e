"""`python -m tests.scripted_bot …`: the real bot process (settings, store, adapters, worker,
signals) on the scripted model instead of the real one, so that a test can run several bot
processes at once on two cores. Takes the same arguments and settings as `python -m bot`.

SCRIPTED_DELAY_S: seconds per decoded word (default 0). SCRIPTED_TAG_DELAY_S: seconds each label
takes (default 0; a process to kill before its label is out). PARENT_SSL_CERT_FILE: the CA bundle of
the test's TLS proxy, for a bot that talks to the Discord fake. SCRIPTED_REPLY=history: each reply
says how many earlier turns its prompt held ("seen 4 turns"), so a test can read from the
database whether every message saw all of the user's messages before it. SCRIPTED_WEBHOOK_FD:
an inherited listening socket the Telegram webhook serves on (tests/webhook_socket.py).
"""

from __future__ import annotations

import os
import socket
import sys

# Importing the tests package made this process a loopback CA of its own; a test that runs
# this bot against its Discord fake passes its CA instead (before aiohttp reads the bundle).
if os.environ.get("PARENT_SSL_CERT_FILE"):
    os.environ["SSL_CERT_FILE"] = os.environ["PARENT_SSL_CERT_FILE"]

from bot.__main__ import main  # imported after the CA is chosen
from engine.types import ReplyRequest
from tests.scripted import ScriptedReply, ScriptedRunner


class HistoryRunner(ScriptedRunner):
    def start_reply(self, request: ReplyRequest) -> ScriptedReply:
        if os.environ.get("SCRIPTED_REPLY") == "history":
            self.reply_text = f"seen {len(request.history)} turns"
        return super().start_reply(request)


def runner() -> HistoryRunner:
    return HistoryRunner(
        delay_s=float(os.environ.get("SCRIPTED_DELAY_S") or 0),
        tag_delay_s=float(os.environ.get("SCRIPTED_TAG_DELAY_S") or 0),
    )


if __name__ == "__main__":
    if fd := os.environ.get("SCRIPTED_WEBHOOK_FD"):
        from tests.webhook_socket import serve_webhooks_on  # imports telegram: only if asked

        serve_webhooks_on(socket.socket(fileno=int(fd)))
    sys.exit(main(runner_factory=runner))
