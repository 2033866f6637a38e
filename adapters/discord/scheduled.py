"""What the Discord adapter sends on its own schedule (the weekly digest, the daily check-in),
shared by both: a direct message to one user (slash command answers are ephemeral, so what
comes later comes privately too), whose refusal (403 Forbidden: DMs closed to the bot, or no
server shared with it any more) becomes RecipientGone, which engine/chat/scheduled.py logs and
skips. The jobs themselves are discord.ext.tasks loops.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import discord
from discord.ext import tasks

from adapters.discord.chat_cog import NO_MENTIONS
from engine.chat.scheduled import RecipientGone
from engine.types import UserKey

MAX_CHARS = 2000


async def send_dm(
    client: discord.Client, user: UserKey, text: str, png: bytes | None = None
) -> discord.Message:
    """`text` (and a PNG chart) as a direct message to `user`."""
    try:
        channel = await client.create_dm(discord.Object(int(user.user_id)))
        files = [] if png is None else [discord.File(io.BytesIO(png), filename="mood.png")]
        return await channel.send(text[:MAX_CHARS], files=files, allowed_mentions=NO_MENTIONS)
    except discord.Forbidden as error:  # DMs closed to the bot, or no shared server
        raise RecipientGone(str(error)) from error


async def stop_loop(loop: tasks.Loop[Any]) -> None:
    """Cancel a job's loop and wait until its task has ended: `Loop.cancel` only asks, and a
    run cut short must not go on once the adapter closes the client."""
    task = loop.get_task()
    loop.cancel()
    if task is not None:
        await asyncio.wait({task})
