"""The replies an adapter is still writing, so that stopping can let them finish first."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class InFlight:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False  # set by finish(): no new work is taken
        self._tasks: set[asyncio.Task[object]] = set()

    def track(self) -> bool:
        """Count the current task as in-flight work until it ends; False once closed."""
        task = asyncio.current_task()
        if self.closed or task is None:
            return False
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def finish(self, grace_s: float) -> None:
        """Close, give the work `grace_s` to end, then cancel what is left."""
        self.closed = True
        pending = {task for task in self._tasks if not task.done()}
        if not pending:
            return
        log.info("%s: waiting for %d reply(ies) to finish", self.name, len(pending))
        _, pending = await asyncio.wait(pending, timeout=grace_s)
        # Cancel, and insist: on Python 3.11 a cancellation racing a result can be swallowed
        # (asyncio.wait_for, gh-86296) anywhere down the stack, so once is not always enough.
        # The handlers hold the chat stream in aclosing(), so a cancelled reply still
        # releases the user's ordering lock.
        for _ in range(20):
            if not pending:
                return
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        log.warning("%s: %d reply(ies) ignored cancellation", self.name, len(pending))
