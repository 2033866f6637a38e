"""Which process is answering a message, and whether that process still lives.

Every open store is one owner: an id of its own, written on each inbox row it claims. A
message still 'received' may be answered by another process only when its owner is gone; a
live owner may just be waiting for the user's turn (behind the user's previous message) and
must not lose the message to a restarting neighbour. Whether an owner lives is asked of
something that the operating system or the database server takes away when the process
ends, however it ends (kill -9 included), never of a clock:

- PostgreSQL: the owner holds an advisory lock keyed by its id, on a connection of its own,
  while the store is open (storage/postgres.py); the server drops it with the connection.
  Gone = that lock can be taken (pg_try_advisory_xact_lock, inside the taking transaction).
- SQLite (a file, hence one machine): the owner holds an exclusive flock on a file named by
  its id in "<database file>-owners/" (OwnerFiles below); the kernel drops it when the
  process ends. Gone = the lock can be taken, or the file is not there. An in-memory
  database belongs to one store, so every other owner is gone.

Checks take the lock shared (pg_try_advisory_xact_lock_shared, LOCK_SH), so that many may ask
at once about one owner without seeing each other as it.

A lock lost while its process lives (the connection to PostgreSQL dropped) makes that process
look gone until it takes the lock again (storage/postgres.py checks every few seconds), so
another may take over a message it is waiting to answer; the first then finds it taken
(take_message, which both call holding the user's turn) and leaves it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import uuid
from pathlib import Path


def new_owner() -> str:
    """This store's owner id: readable in the inbox (host and pid), unique (a random part)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class OwnerFiles:
    """Owners of one SQLite file, each holding a flock on `<folder>/<owner id>`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held: tuple[str, int] | None = None

    def hold(self, owner: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / owner, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh id: nobody else holds it
        self._held = (owner, fd)
        self._sweep()

    def gone(self, owner: str) -> bool:
        if self._held is not None and self._held[0] == owner:
            return False
        try:
            fd = os.open(self.folder / owner, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            # Shared: two checks at once (threads of one process, or two processes) must not
            # see each other as the owner, who holds it exclusively.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # also drops the lock, if it was taken
        return True

    def release(self) -> None:
        if self._held is None:
            return
        owner, fd = self._held
        self._held = None
        with contextlib.suppress(OSError):
            (self.folder / owner).unlink()
        os.close(fd)

    def _sweep(self) -> None:
        """Remove the files of owners that are gone (a process killed cannot remove its own);
        a row that still names one reads a missing file as gone, as it should."""
        for path in self.folder.iterdir():
            if self.gone(path.name):
                with contextlib.suppress(OSError):
                    path.unlink()
