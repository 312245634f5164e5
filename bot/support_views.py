"""The buttons under an answer in a support thread: **Still need help** (hands the thread to the support
role, once) and **Solved** (the asker or Manage Threads: applies the forum's Solved tag, records the
resolution). Persistent: the custom id carries the thread, so they work after a restart (registered with
`add_dynamic_items` in setup_hook)."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord.ext import commands

log = logging.getLogger(__name__)


class SupportButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"ragcord:support:(?P<action>help|solved):(?P<thread_id>[0-9]{1,20})",
):
    def __init__(self, action: str, thread_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.success if action == "solved" else discord.ButtonStyle.secondary,
                label="Solved" if action == "solved" else "Still need help",
                emoji="✅" if action == "solved" else "🙋",
                custom_id=f"ragcord:support:{action}:{thread_id}",
            )
        )
        self.action = action
        self.thread_id = thread_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SupportButton:
        return cls(match["action"], int(match["thread_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        from bot.cogs.support import SupportCog  # (the cog imports this module)

        client = interaction.client
        cog = client.get_cog("SupportCog") if isinstance(client, commands.Bot) else None
        thread = interaction.channel
        if (
            not isinstance(cog, SupportCog)
            or not isinstance(thread, discord.Thread)
            or thread.id != self.thread_id
        ):
            await interaction.response.send_message(
                "This button only works in its own thread.", ephemeral=True
            )
            return
        if self.action == "help":
            await cog.still_need_help(interaction, thread)
        else:
            await cog.mark_solved(interaction, thread)


def support_items(thread_id: int) -> list[SupportButton]:
    return [SupportButton("help", thread_id), SupportButton("solved", thread_id)]
