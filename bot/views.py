"""👍/👎 under each answer: persistent buttons (custom ids carry the answer id, so they keep working
after a restart; registered with `add_dynamic_items` in setup_hook)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import discord

from bot.client import services_of

log = logging.getLogger(__name__)


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"ragcord:fb:(?P<vote>up|down):(?P<answer_id>[0-9a-f]{8,32})",
):
    def __init__(self, vote: str, answer_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji="👍" if vote == "up" else "👎",
                custom_id=f"ragcord:fb:{vote}:{answer_id}",
            )
        )
        self.vote = vote
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FeedbackButton:
        return cls(match["vote"], match["answer_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        feedback = services_of(interaction.client).feedback
        try:
            await asyncio.to_thread(feedback.vote, self.answer_id, str(interaction.user.id), self.vote)
            questions = services_of(interaction.client).questions
            await asyncio.to_thread(questions.mark, self.answer_id, "up" if self.vote == "up" else "down")
        except Exception:
            log.exception("recording feedback on answer %s failed", self.answer_id)
            await interaction.response.send_message(
                "Sorry, I couldn't record that. Please try again later.", ephemeral=True
            )
            return
        await interaction.response.send_message("Thanks for the feedback!", ephemeral=True)


def feedback_view(answer_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton("up", answer_id))
    view.add_item(FeedbackButton("down", answer_id))
    return view
