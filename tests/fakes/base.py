"""What every loopback fake shares: an aiohttp app on 127.0.0.1 at a free port, a record of
every call, failures a test scripts for the next calls, and waiting for a condition."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Generic, Self, TypeVar

from aiohttp import web

Call = TypeVar("Call")
Fault = TypeVar("Fault")
T = TypeVar("T")

# How long a wait for something the code under test does may take before the test fails: only
# a guard against hanging. Far above what any wait takes, even on a loaded machine; a passing
# test never waits it out.
GUARD_S = 30.0


class RecordingServer(Generic[Call, Fault]):
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.port = 0
        self._faults: dict[str, list[Fault]] = {}
        self._runner: web.AppRunner | None = None

    async def serve(self, app: web.Application) -> None:
        # No access log: it would print token-bearing paths into the logs tests inspect.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0,
                                     access_log=None)  # fmt: skip
        await self._runner.setup()
        # Bind the socket ourselves: loopback only, and the port is known before serving.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        raise NotImplementedError

    def describe(self, call: Call) -> str:
        """A call in a few words, for timeout messages."""
        return str(call)

    # --- scripted failures -------------------------------------------------------------------

    def script_fault(self, key: str, fault: Fault, times: int = 1) -> None:
        """The next `times` calls of `key` (a method or route) are answered with `fault`."""
        self._faults.setdefault(key, []).extend([fault] * times)

    def take_fault(self, key: str) -> Fault | None:
        faults = self._faults.get(key)
        return faults.pop(0) if faults else None

    # --- waiting -----------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[], T], timeout: float = GUARD_S, what: str = ""
    ) -> T:
        """Poll until `predicate()` is truthy and return that value; on timeout the error
        shows the last calls the fake saw."""
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() > deadline:
                seen = ", ".join(self.describe(call) for call in self.calls[-10:])
                raise AssertionError(f"timed out waiting for {what or predicate}; last: {seen}")
            await asyncio.sleep(0.01)
        return result
