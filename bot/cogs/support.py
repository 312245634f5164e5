"""Support communities: new posts in auto-answer channels answered in their thread, the handoff to the
support role, and threads marked solved (button or the forum's Solved tag)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import discord
from discord.ext import commands

from bot.client import BotServices, RagcordBotBase
from bot.render import clip, format_answer, link_title, shorten, split_message
from bot.support_views import support_items
from bot.views import FeedbackButton
from ragcord.answering.types import Answer
from ragcord.errors import AnswerUnavailable, InvalidArgument, PermissionDenied
from ragcord.support import Mode, is_question

log = logging.getLogger(__name__)
NONE = discord.AllowedMentions.none()
SUGGESTIONS = 3  # pages a `suggest` channel shows
SOLVED_TAG = "solved"  # the forum tag applied on Solved (case-insensitive name match)


def solved_tag(forum: discord.ForumChannel | None) -> discord.ForumTag | None:
    if forum is None:
        return None
    return next((t for t in forum.available_tags if t.name.strip().lower() == SOLVED_TAG), None)


def suggestion_text(answer: Answer) -> str:
    pages: dict[str, str] = {}
    for citation in answer.citations:
        pages.setdefault(citation.page_url, citation.title or citation.page_url)
    lines = [f"• [{link_title(title)}](<{url}>)" for url, title in list(pages.items())[:SUGGESTIONS]]
    return clip("These pages may help:\n" + "\n".join(lines))


def autoanswer_text(channel: str, mode: str) -> str:
    return {
        "answer": f"I'll answer new questions in {channel}, and hand off to the support team when I can't.",
        "suggest": f"I'll suggest up to {SUGGESTIONS} pages for new questions in {channel}.",
        "off": f"I won't answer new posts in {channel} any more.",
    }[mode]


def support_role_text(role: str | None) -> str:
    if role is None:
        return "No support team: I won't mention anyone when I can't help."
    return f"When I can't help in a thread, I'll mention {role} there (once per thread)."


def server_settings_text(services: BotServices, guild_id: int) -> str:
    """Every per-server setting, for /kb settings."""
    support = services.support.get(guild_id)
    kb = services.bindings.resolve(guild_id)
    lines = [f"**Knowledge base**: `{kb}`"]
    if support.autoanswer:
        channels = ", ".join(f"<#{c}> ({m.value})" for c, m in sorted(support.autoanswer.items()))
        lines.append(f"**Auto-answer**: {channels}")
    else:
        lines.append("**Auto-answer**: off everywhere (`/kb autoanswer`)")
    lines.append(
        f"**Support team**: <@&{support.role_id}>"
        if support.role_id
        else "**Support team**: none (`/kb support`)"
    )
    learn = ", ".join(f"<#{c}>" for c in sorted(support.learn))
    lines.append(f"**Learning from solved threads**: {learn or 'off (`/kb learn`)'}")
    for extra in EXTRA_SETTINGS:
        lines.extend(extra(services, guild_id))
    return "\n".join(lines)


# Other features add lines to /kb settings here: each is called with (services, guild id) and returns lines.
EXTRA_SETTINGS: list[Callable[[BotServices, int], list[str]]] = []


class SupportCog(commands.Cog):
    def __init__(self, bot: RagcordBotBase) -> None:
        self.bot = bot
        self.services = bot.services

    # -- new posts -----------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.bot.user is None:
            return
        channel = message.channel
        if isinstance(channel, discord.Thread) and message.id == channel.id:
            if not isinstance(channel.parent, discord.ForumChannel):
                return
            where, title = channel.parent_id, channel.name  # a forum post's starter message
        elif isinstance(channel, discord.TextChannel) and self.bot.user not in message.mentions:
            where, title = channel.id, ""  # (a mention is /ask's business: AskCog answers it)
        else:
            return
        support = await asyncio.to_thread(self.services.support.get, message.guild.id)
        mode = support.autoanswer.get(where)
        if mode is None:
            return
        roles = getattr(message.author, "roles", [])
        if support.role_id is not None and any(r.id == support.role_id for r in roles):
            log.debug("post %s by staff: not answered", message.id)
            return
        if not is_question(title, message.content):
            log.debug("post %s is not a question: not answered", message.id)
            return
        try:
            kb = await asyncio.to_thread(self.services.bindings.usable, message.guild.id, channel.id, where)
        except PermissionDenied:
            log.warning("auto-answer channel %s: its knowledge base is not usable by this server", where)
            return
        if isinstance(channel, discord.Thread):
            thread = channel
        else:
            await asyncio.to_thread(self.services.threads.add, message.id, str(message.id))
            thread = await message.create_thread(name=shorten(message.content), auto_archive_duration=1440)
        question = f"{title}\n{message.content}".strip()
        await self.answer_post(thread, question, kb, mode, message.author)

    async def answer_post(
        self, thread: discord.Thread, question: str, kb: str, mode: Mode, asker: discord.abc.User
    ) -> None:
        """Answer a new post in its thread; the thread then continues as an /ask conversation."""
        s = self.services
        try:
            answer = await asyncio.to_thread(
                s.ask.ask, question, knowledge_base=kb, conversation_id=str(thread.id), author=str(asker)
            )
        except (AnswerUnavailable, InvalidArgument) as exc:
            await thread.send(clip(f"Sorry, I can't answer right now: {exc}."), allowed_mentions=NONE)
            return
        # Follow-ups in the post are answered from its memory, like an /ask thread (AskCog.on_message).
        await asyncio.to_thread(s.threads.add, thread.id, str(thread.id))
        if not answer.found:
            await self.hand_off(thread, "I couldn't find this in the documentation.")
            return
        view = discord.ui.View(timeout=None)
        if mode is Mode.SUGGEST:
            parts = [suggestion_text(answer)]
        else:
            parts = split_message(format_answer(answer))
            answer_id = uuid.uuid4().hex[:16]
            await asyncio.to_thread(
                s.feedback.record_answer,
                answer_id,
                question=question,
                answer=answer.text,
                cited_urls=list(dict.fromkeys(c.page_url for c in answer.citations)),
                knowledge_base=kb,
                guild_id=str(thread.guild.id),
            )
            view.add_item(FeedbackButton("up", answer_id))
            view.add_item(FeedbackButton("down", answer_id))
        for item in support_items(thread.id):
            view.add_item(item)
        for index, part in enumerate(parts):
            if index == len(parts) - 1:
                await thread.send(part, allowed_mentions=NONE, view=view)
            else:
                await thread.send(part, allowed_mentions=NONE)

    # -- the handoff ---------------------------------------------------------------------------------------

    async def hand_off(self, thread: discord.Thread, lead: str, *, repeat: bool = True) -> str:
        """Say `lead`, and mention the support role in the thread once ever (`repeat=False`: say nothing
        when that already happened); returns what happened."""
        s = self.services
        support = await asyncio.to_thread(s.support.get, thread.guild.id)
        if support.role_id is None:
            await thread.send(
                f"{lead} A server admin can name a support team with `/kb support`.", allowed_mentions=NONE
            )
            return "no-role"
        if not await asyncio.to_thread(s.support.claim_handoff, thread.id):
            if repeat:
                await thread.send(
                    f"{lead} The support team has already been asked here.", allowed_mentions=NONE
                )
            return "already"
        # The one mention ragcord ever sends: this role, nothing else.
        only_the_role = discord.AllowedMentions(
            everyone=False, users=False, replied_user=False, roles=[discord.Object(support.role_id)]
        )
        await thread.send(f"{lead} <@&{support.role_id}>, can you help here?", allowed_mentions=only_the_role)
        return "handed-off"

    async def still_need_help(self, interaction: discord.Interaction, thread: discord.Thread) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self.hand_off(thread, "Still need help.", repeat=False)
        await interaction.followup.send(
            {
                "no-role": "There is no support team set for this server yet.",
                "already": "The support team was already asked in this thread.",
                "handed-off": "I've asked the support team.",
            }[outcome],
            ephemeral=True,
        )

    # -- solved --------------------------------------------------------------------------------------------

    async def mark_solved(self, interaction: discord.Interaction, thread: discord.Thread) -> None:
        user = interaction.user
        is_asker = thread.owner_id == user.id
        if not is_asker and not interaction.permissions.manage_threads:
            await interaction.response.send_message(
                "Only the person who asked, or someone with Manage Threads, can mark this solved.",
                ephemeral=True,
            )
            return
        kb = await asyncio.to_thread(
            self.services.bindings.resolve, thread.guild.id, thread.id, thread.parent_id
        )
        answer = interaction.message.content if interaction.message is not None else ""
        await asyncio.to_thread(
            self.services.support.record_solved,
            thread.id,
            by_staff=not is_asker,
            knowledge_base=kb,
            answer=answer,
        )
        note = "Marked as solved."
        tag = solved_tag(thread.parent if isinstance(thread.parent, discord.ForumChannel) else None)
        if tag is not None and tag not in thread.applied_tags:
            try:
                await thread.add_tags(tag, reason="marked solved")
            except discord.Forbidden:
                note += " I couldn't apply the Solved tag: give me the Manage Threads permission."
        await interaction.response.send_message(note, ephemeral=True)

    @commands.Cog.listener()
    async def on_thread_update(self, before: discord.Thread, after: discord.Thread) -> None:
        """A moderator applied the forum's Solved tag: the thread is solved."""
        tag = solved_tag(after.parent if isinstance(after.parent, discord.ForumChannel) else None)
        if tag is None or tag not in after.applied_tags or tag in before.applied_tags:
            return
        kb = await asyncio.to_thread(
            self.services.bindings.resolve, after.guild.id, after.id, after.parent_id
        )
        await asyncio.to_thread(
            self.services.support.record_solved, after.id, by_staff=True, knowledge_base=kb
        )


async def setup(bot: RagcordBotBase) -> None:
    await bot.add_cog(SupportCog(bot))
