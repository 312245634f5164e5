"""/ask, /forget, and answers in threads and to mentions."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import Protocol, TypeVar

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import MISSING

from bot.client import RagcordBotBase, guild_id_of
from bot.render import clip, format_answer, preview, shorten, split_message
from bot.views import feedback_view
from ragcord.aio import iterate_in_thread
from ragcord.answering.types import Answer
from ragcord.errors import AnswerUnavailable, InvalidArgument, PermissionDenied
from ragcord.metrics import ANSWER_LATENCY

log = logging.getLogger(__name__)
NONE = discord.AllowedMentions.none()
_Sent = TypeVar("_Sent", covariant=True)


class Send(Protocol[_Sent]):
    """Posts one part of an answer (a followup, a reply, a channel's send); the view only on the last."""

    def __call__(
        self, *, content: str, allowed_mentions: discord.AllowedMentions, view: discord.ui.View = ...
    ) -> Awaitable[_Sent]: ...


async def _post(send: Send[_Sent], content: str, view: discord.ui.View | None) -> _Sent:
    """Pass `view` only when there is one: the senders' own defaults for it differ."""
    if view is None:
        return await send(content=content, allowed_mentions=NONE)
    return await send(content=content, allowed_mentions=NONE, view=view)


# The channels a guild's /ask can come from: text, thread, and a voice or stage channel's chat.
_AskChannel = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel


class AskCog(commands.Cog):
    def __init__(self, bot: RagcordBotBase) -> None:
        self.bot = bot
        self.services = bot.services

    # -- answering, shared by every entry point ---------------------------------------------------------

    async def _rate_limited(self, user: discord.abc.User) -> float | None:
        return await asyncio.to_thread(self.services.limiter.hit, str(user.id))

    async def answer(
        self,
        *,
        question: str,
        knowledge_base: str,
        conversation_id: str,
        author: str,
        send_first: Send[discord.Message],
        send_more: Send[object] | None = None,
        guild_id: str = "",
    ) -> discord.Message:
        """Ask, stream the reply into `send_first`'s message (edits at most every stream_edit_seconds),
        then post the final text with sources and feedback buttons; returns the first message."""
        ask = self.services.ask
        started = time.perf_counter()
        streaming = getattr(ask.answerer, "name", "") == "openai"
        interval = self.services.settings.stream_edit_seconds
        message: discord.Message | None = None
        text = ""
        last_edit = 0.0
        answer: Answer | None = None

        def run() -> Iterator[str | Answer]:
            return ask.ask_stream(
                question, knowledge_base=knowledge_base, conversation_id=conversation_id, author=author
            )

        async for item in iterate_in_thread(run):
            if isinstance(item, Answer):
                answer = item
                break
            text += item
            if streaming and time.monotonic() - last_edit >= interval and text.strip():
                partial = preview(text)
                if message is None:
                    message = await send_first(content=partial, allowed_mentions=NONE)
                else:
                    await message.edit(content=partial, allowed_mentions=NONE)
                last_edit = time.monotonic()
        assert answer is not None
        ANSWER_LATENCY.labels("discord").observe(time.perf_counter() - started)
        parts = split_message(format_answer(answer))
        answer_id = uuid.uuid4().hex[:16]
        await asyncio.to_thread(
            self.services.feedback.record_answer,
            answer_id,
            question=question,
            answer=answer.text,
            cited_urls=list(dict.fromkeys(c.page_url for c in answer.citations)),  # votes count per page
            knowledge_base=knowledge_base,
            guild_id=guild_id,
        )
        await asyncio.to_thread(
            self.services.questions.record,
            knowledge_base,
            answer_id,
            question,
            user=author,
            found=answer.found,
        )
        view = feedback_view(answer_id)
        last = len(parts) - 1
        if message is None:
            message = await _post(send_first, parts[0], view if last == 0 else None)
        elif last == 0:
            await message.edit(content=parts[0], allowed_mentions=NONE, view=view)
        else:
            await message.edit(content=parts[0], allowed_mentions=NONE)
        if last:
            more: Send[object] = send_more or send_first
            for index, part in enumerate(parts[1:], start=1):
                await _post(more, part, view if index == last else None)
        return message

    @staticmethod
    def failure_text(exc: Exception) -> str:
        if isinstance(exc, AnswerUnavailable):
            return clip(f"Sorry, I can't answer right now: {exc}.")
        if isinstance(exc, InvalidArgument):
            return clip(f"I can't ask that: {exc}.")
        if isinstance(exc, PermissionDenied):
            return clip(f"I can't answer here: {exc}.")
        return "Sorry, something went wrong while answering. The team has the details in the logs."

    def knowledge_base_for(self, channel: discord.abc.Snowflake, guild_id: int) -> str:
        parent = getattr(channel, "parent_id", None)
        return self.services.bindings.usable(guild_id, channel.id, parent)

    # -- /ask ----------------------------------------------------------------------------------------------

    @app_commands.command(name="ask")
    @app_commands.describe(question="What do you want to know about the documentation?")
    @app_commands.guild_only()
    async def ask(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 2000]) -> None:
        """Ask the documentation; the answer opens a thread where the conversation continues."""
        guild_id, channel = guild_id_of(interaction), interaction.channel
        if not isinstance(channel, _AskChannel):  # (a server's /ask always comes from one of these)
            raise app_commands.CheckFailure(f"/ask from a {type(channel).__name__}")
        wait = await self._rate_limited(interaction.user)
        if wait is not None:
            await interaction.response.send_message(
                f"You're asking quickly: try again in {math.ceil(wait)} s.",
                ephemeral=True,
                allowed_mentions=NONE,
            )
            return
        try:
            kb = await asyncio.to_thread(self.knowledge_base_for, channel, guild_id)
        except PermissionDenied as exc:
            await interaction.response.send_message(self.failure_text(exc), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        in_thread = isinstance(channel, discord.Thread)
        # In a thread the conversation continues under its id; otherwise the answer opens a thread, and the
        # conversation moves to that thread's id once it exists.
        provisional = str(channel.id) if in_thread else f"ask-{interaction.id}"
        thread_parts: list[tuple[str, discord.ui.View | None]] = []  # posted in the thread once it exists

        async def send_first(
            *, content: str, allowed_mentions: discord.AllowedMentions, view: discord.ui.View = MISSING
        ) -> discord.Message:
            return await interaction.followup.send(
                content=content, allowed_mentions=allowed_mentions, view=view, wait=True
            )

        async def collect_more(
            *, content: str, allowed_mentions: discord.AllowedMentions, view: discord.ui.View | None = None
        ) -> None:
            thread_parts.append((content, view))

        try:
            message = await self.answer(
                question=question,
                knowledge_base=kb,
                conversation_id=provisional,
                author=str(interaction.user),
                send_first=send_first,
                send_more=collect_more,
                guild_id=str(guild_id),
            )
        except Exception as exc:
            if not isinstance(exc, AnswerUnavailable | InvalidArgument):
                log.exception("answering /ask failed")
            await interaction.followup.send(self.failure_text(exc), allowed_mentions=NONE)
            return
        if isinstance(channel, discord.Thread):
            for content, view in thread_parts:
                await _post(channel.send, content, view)
            return
        # A thread started from a message has the message's id: own it first, so a reply typed the moment
        # the thread appears is already answered within this conversation.
        await asyncio.to_thread(self.services.ask.memory.rename, provisional, str(message.id))
        await asyncio.to_thread(self.services.threads.add, message.id, str(message.id))
        target: discord.abc.Messageable = channel  # (a voice or stage channel's chat holds no threads)
        if isinstance(channel, discord.TextChannel):
            # Through the channel: a followup message carries no guild, so Message.create_thread cannot.
            target = await channel.create_thread(
                name=shorten(question), message=message, auto_archive_duration=1440
            )
        for content, view in thread_parts:
            await _post(target.send, content, view)

    # -- /forget ------------------------------------------------------------------------------------------

    @app_commands.command(name="forget")
    @app_commands.guild_only()
    async def forget(self, interaction: discord.Interaction) -> None:
        """Forget this thread's conversation: the next question starts fresh."""
        channel = interaction.channel
        if not isinstance(channel, discord.Thread):
            await interaction.response.send_message(
                "Use /forget inside a conversation thread.", ephemeral=True
            )
            return
        conversation = await asyncio.to_thread(self.services.threads.conversation_of, channel.id)
        cleared = await asyncio.to_thread(self.services.ask.clear, conversation or str(channel.id))
        await interaction.response.send_message(
            "Done: I've forgotten this conversation." if cleared else "There was nothing to forget here.",
            ephemeral=True,
        )

    # -- messages: follow-ups in our threads, and mentions elsewhere ---------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.bot.user is None:
            return
        channel = message.channel
        in_thread = isinstance(channel, discord.Thread)
        conversation = (
            await asyncio.to_thread(self.services.threads.conversation_of, channel.id) if in_thread else None
        )
        mentioned = self.bot.user in message.mentions
        if conversation is None and not mentioned:
            log.debug(
                "ignoring message %s in %s (%s): not our thread, no mention",
                message.id,
                channel.id,
                type(channel).__name__,
            )
            return
        question = re.sub(rf"<@!?{self.bot.user.id}>", "", message.content).strip()
        if not question:
            await message.reply("Ask me a question about the documentation.", allowed_mentions=NONE)
            return
        wait = await self._rate_limited(message.author)
        if wait is not None:
            told = await asyncio.to_thread(self.services.limiter.tell_once, str(message.author.id), wait)
            if told:
                await message.reply(
                    f"You're asking quickly: try again in {math.ceil(wait)} s.",
                    allowed_mentions=NONE,
                    delete_after=15,
                )
            return
        try:
            kb = await asyncio.to_thread(self.knowledge_base_for, channel, message.guild.id)
        except PermissionDenied as exc:
            await message.reply(self.failure_text(exc), allowed_mentions=NONE)
            return
        send_first: Send[discord.Message]
        if conversation is not None or in_thread:
            target: discord.abc.Messageable = channel
            conversation_id = conversation or str(channel.id)
            send_first = message.reply
        else:
            await asyncio.to_thread(self.services.threads.add, message.id, str(message.id))  # the thread's id
            thread = await message.create_thread(name=shorten(question), auto_archive_duration=1440)
            target, conversation_id = thread, str(thread.id)
            send_first = thread.send
        try:
            await self.answer(
                question=question,
                knowledge_base=kb,
                conversation_id=conversation_id,
                author=str(message.author),
                send_first=send_first,
                send_more=target.send,
                guild_id=str(message.guild.id),
            )
        except Exception as exc:
            if not isinstance(exc, AnswerUnavailable | InvalidArgument):
                log.exception("answering a message failed")
            await target.send(self.failure_text(exc), allowed_mentions=NONE)


async def setup(bot: RagcordBotBase) -> None:
    await bot.add_cog(AskCog(bot))
