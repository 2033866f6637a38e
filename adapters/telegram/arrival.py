"""Recording each update's message before Telegram is told it arrived.

Telegram forgets an update once it is confirmed: in polling, by the next getUpdates (its
offset is past the update); with a webhook, by the 200 answering the POST. python-telegram-bot
does both right after putting the update into the Application's update queue, while our
handler runs later, as a task. A process killed in between lost the message for good.

Both of PTB's update sources await `update_queue.put(update)` before they confirm: the polling
loop sends the next getUpdates only after putting the whole batch, and the webhook handler
answers when its `post` returns, after the put. So the queue is where to record: this one
(given to the ApplicationBuilder's `update_queue`) awaits `record(update)` before putting it.
Whatever else goes into the queue (PTB's stop signal) passes straight through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from telegram import Update

Record = Callable[[Update], Awaitable[None]]


class RecordingQueue(asyncio.Queue[object]):
    def __init__(self, record: Record) -> None:
        super().__init__()
        self._record = record

    async def put(self, item: object) -> None:
        if isinstance(item, Update):
            await self._record(item)
        await super().put(item)
