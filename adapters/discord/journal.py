"""Discord's side of the journal (engine/chat/journal.py): correction buttons under a label.

The buttons are DynamicItems: their custom id ("mood:fix:<message id>:<tone>") carries all
they need, so discord.py routes a press to CorrectionButton even after a restart, with no
view kept in memory. Anyone in a channel sees them; only the message's author can use them
(the store checks the event's owner), and everyone else is told why, ephemerally.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.types import Sentiment, UserKey

if TYPE_CHECKING:
    from adapters.discord.host import DiscordHost

log = logging.getLogger(__name__)

PLATFORM = "discord"


class CorrectionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mood:fix:(?P<message_id>\d+):(?P<tone>positive|negative|neutral)",
):
    adapter: DiscordHost | None = None  # set when the adapter registers the item
    commands: Commands | None = None

    def __init__(self, label: str, data: str) -> None:
        super().__init__(
            discord.ui.Button(label=label, custom_id=data, style=discord.ButtonStyle.secondary)
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> CorrectionButton:
        return cls("", match.string)

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter, commands = CorrectionButton.adapter, CorrectionButton.commands
        if adapter is None or commands is None or not adapter.track():
            return
        if not adapter.user_allowed(interaction.user.id):
            await interaction.response.send_message(texts.NOT_ALLOWED, ephemeral=True)
            return
        caller = Caller(UserKey(PLATFORM, str(interaction.user.id)), str(interaction.channel_id))
        result = await commands.press_correction(caller, self.item.custom_id or "")
        message = interaction.message
        if result.label_line is None or message is None:
            await interaction.response.send_message(result.text, ephemeral=True)
            return
        _, _, rest = message.content.partition("\n")
        content = f"{result.label_line}\n{rest}" if rest else result.label_line
        # The buttons go: a label is corrected once.
        await interaction.response.edit_message(
            content=content, view=None, allowed_mentions=discord.AllowedMentions.none()
        )
        await interaction.followup.send(result.text, ephemeral=True)


def register(bot: discord.Client, adapter: DiscordHost, commands: Commands) -> None:
    CorrectionButton.adapter, CorrectionButton.commands = adapter, commands
    bot.add_dynamic_items(CorrectionButton)


async def attach_corrections(
    label: discord.Message | discord.PartialMessage, message_id: str, sentiment: Sentiment
) -> None:
    """Put the buttons under the label message once its exchange is stored (best effort)."""
    view = discord.ui.View(timeout=None)
    for text, data in Commands.correction_buttons(message_id, sentiment.tone):
        view.add_item(CorrectionButton(text, data))
    # Stopped, so discord.py does not keep it for this message: a press goes to the
    # registered DynamicItem only (a kept view would run the callback a second time).
    view.stop()
    try:
        # Like every write of the bot's: no mention in the (model-written) text may ping.
        await label.edit(view=view, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as error:
        log.info("could not add the correction buttons: %s", error)
