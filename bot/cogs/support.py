"""Support communities: new posts in auto-answer channels answered in their thread, the handoff to the
support role, and threads marked solved (button or the forum's Solved tag)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import discord
from discord.ext import commands
from discord.utils import MISSING

from bot.client import BotServices, RagcordBotBase
from bot.cogs.ask import AskCog
from bot.render import clip, format_answer, link_title, neutralize_mentions, shorten, split_message
from bot.support_views import SupportButton, support_items
from bot.views import FeedbackButton
from ragcord.answering.types import Answer
from ragcord.errors import AnswerUnavailable, InvalidArgument, PermissionDenied
from ragcord.learning import SolvedThread
from ragcord.questions import total
from ragcord.schedules import Schedules, describe_every
from ragcord.support import Mode, is_question
from ragcord.updates import ServerUpdates

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


def learn_text(channel: str, enabled: bool, removed: int, shared_kb: str | None = None) -> str:
    """`shared_kb`: the channel's knowledge base when it is not this server's own (nothing learned then)."""
    if enabled:
        text = (
            f"Threads solved in {channel} will become sources of this server's knowledge base: the question "
            "and the answer that solved it, without names, linked to the thread."
        )
        if shared_kb:
            text += (
                f"\nNote: `{shared_kb}` is shared with other servers, so I won't learn into it. Bind a "
                "knowledge base of this server's own first (`/crawl` into a new name, then `/kb bind`)."
            )
        return text
    return f"I won't learn from {channel} any more; removed {removed} learned thread(s)."


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
    lines.extend(_freshness_lines(services, guild_id, kb))
    for extra in EXTRA_SETTINGS:
        lines.extend(extra(services, guild_id))
    return "\n".join(lines)


def _freshness_lines(services: BotServices, guild_id: int, kb: str) -> list[str]:
    """The knowledge base's re-crawl schedule and the server's updates channel (/kb schedule, /kb updates)."""
    redis, prefix = services.jobs.redis, services.jobs.keys.prefix
    schedule = Schedules(redis, prefix=prefix).get(kb)
    updates = ServerUpdates(redis, prefix=prefix).channel_of(guild_id)
    return [
        f"**Re-crawled**: every {describe_every(schedule.every_seconds)}"
        if schedule
        else "**Re-crawled**: never on its own (`/kb schedule`)",
        f"**Updates posted in**: <#{updates[0]}>"
        if updates
        else "**Updates posted in**: nowhere (`/kb updates`)",
    ]


def report_text(services: BotServices, kb: str, *, days: int = 7) -> str:
    """/kb report: the last week in a few lines, and the three biggest groups of unanswered questions."""
    since = time.time() - days * 86400
    stats = total(services.questions.stats(kb, since=since))
    clusters = services.questions.unanswered(kb, services.learning.embedder, since=since)
    if not stats.questions:
        return f"No questions in `{kb}` in the last {days} days."
    votes = f"{stats.up} 👍 / {stats.down} 👎" if stats.up + stats.down else "no votes"
    lines = [
        f"**`{kb}`, last {days} days**: {stats.questions} questions, {stats.answered_rate:.0%} answered, "
        f"{votes}, {stats.handed_off} handed off, {stats.solved_without_staff} solved without staff.",
    ]
    if clusters:
        lines.append("**Not answered** (asked × times):")
        top = sorted(clusters, key=lambda c: (-c.count, -c.latest_at))[:3]
        lines.extend(f"• {c.count} × {shorten(c.examples[0], 150)}" for c in top)
        lines.append("The full report: `ragcord report --kb " + kb + "`.")
    return clip(neutralize_mentions("\n".join(lines)))


# Other features add lines to /kb settings here: each is called with (services, guild id) and returns lines.
EXTRA_SETTINGS: list[Callable[[BotServices, int], list[str]]] = []


def _is_answer(message: discord.Message | None) -> bool:
    """The bot's answer from the docs: it carries the 👍/👎 buttons."""
    if message is None:
        return False
    ids = [
        getattr(c, "custom_id", "") or "" for row in message.components for c in getattr(row, "children", [])
    ]
    return any(i.startswith("ragcord:fb:") for i in ids)


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
        if isinstance(channel, discord.Thread) and message.id != channel.id:
            await self.follow_up(message, channel)
            return
        if isinstance(channel, discord.Thread):
            if not isinstance(channel.parent, discord.ForumChannel) or self.bot.user in message.mentions:
                return  # (a post that mentions the bot is answered by AskCog, as every mention is)
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
            thread = await message.create_thread(name=shorten(message.content), auto_archive_duration=1440)
        question = f"{title}\n{message.content}".strip()
        await self.answer_post(thread, question, kb, mode, message.author)

    async def follow_up(self, message: discord.Message, thread: discord.Thread) -> None:
        """The asker's next question in their post, answered from the post's memory like an /ask thread.
        Others' replies (the community answering) and anything after the handoff are left to people; a
        mention of the bot is AskCog's."""
        s = self.services
        assert self.bot.user is not None and message.guild is not None
        if self.bot.user in message.mentions:
            return
        asker = await asyncio.to_thread(s.support.asker_of, thread.id)
        if asker != message.author.id or not is_question("", message.content):
            return
        if await asyncio.to_thread(s.support.handed_off, thread.id):
            return
        ask = self.bot.get_cog("AskCog")
        if not isinstance(ask, AskCog):
            return
        try:
            kb = await asyncio.to_thread(ask.knowledge_base_for, thread, message.guild.id)
            await ask.answer(
                question=message.content,
                knowledge_base=kb,
                conversation_id=str(thread.id),
                author=str(message.author),
                send_first=message.reply,
                send_more=thread.send,
                guild_id=str(message.guild.id),
            )
        except Exception as exc:
            if not isinstance(exc, AnswerUnavailable | InvalidArgument | PermissionDenied):
                log.exception("answering a follow-up in support thread %s failed", thread.id)
            await thread.send(AskCog.failure_text(exc), allowed_mentions=NONE)

    async def answer_post(
        self, thread: discord.Thread, question: str, kb: str, mode: Mode, asker: discord.abc.User
    ) -> None:
        """Answer a new post in its thread; the asker's follow-ups there continue the conversation."""
        s = self.services
        await asyncio.to_thread(s.support.open_thread, thread.id, asker.id)
        try:
            answer = await asyncio.to_thread(
                s.ask.ask, question, knowledge_base=kb, conversation_id=str(thread.id), author=str(asker)
            )
        except (AnswerUnavailable, InvalidArgument) as exc:
            await thread.send(clip(f"Sorry, I can't answer right now: {exc}."), allowed_mentions=NONE)
            return
        # (the post's question id is the answer id its 👍/👎 buttons carry)
        answer_id = uuid.uuid4().hex[:16]
        await asyncio.to_thread(
            s.questions.record,
            kb,
            answer_id,
            " ".join(question.split()),  # (title and text on one line)
            user=str(asker.id),
            found=answer.found,
            thread_id=thread.id,
        )
        if not answer.found:
            solved_only = discord.ui.View(timeout=None)  # for when a person has answered
            solved_only.add_item(SupportButton("solved", thread.id))
            await self.hand_off(thread, "I couldn't find this in the documentation.", view=solved_only)
            return
        view = discord.ui.View(timeout=None)
        if mode is Mode.SUGGEST:
            parts = [suggestion_text(answer)]
        else:
            parts = split_message(format_answer(answer))
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

    async def hand_off(
        self, thread: discord.Thread, lead: str, *, repeat: bool = True, view: discord.ui.View = MISSING
    ) -> str:
        """Say `lead`, and mention the support role in the thread once ever (`repeat=False`: say nothing
        when that already happened); `view` goes on the message; returns what happened."""
        s = self.services
        support = await asyncio.to_thread(s.support.get, thread.guild.id)
        if support.role_id is None:
            await thread.send(
                f"{lead} A server admin can name a support team with `/kb support`.",
                allowed_mentions=NONE,
                view=view,
            )
            return "no-role"
        if not await asyncio.to_thread(s.support.claim_handoff, thread.id):
            if repeat:
                await thread.send(
                    f"{lead} The support team has already been asked here.", allowed_mentions=NONE, view=view
                )
            return "already"
        # The one mention ragcord ever sends: this role, nothing else.
        only_the_role = discord.AllowedMentions(
            everyone=False, users=False, replied_user=False, roles=[discord.Object(support.role_id)]
        )
        await thread.send(
            f"{lead} <@&{support.role_id}>, can you help here?", allowed_mentions=only_the_role, view=view
        )
        await asyncio.to_thread(s.questions.mark_thread, thread.id, "handed_off")
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
        await interaction.response.defer(ephemeral=True, thinking=True)
        kb = await asyncio.to_thread(
            self.services.bindings.resolve, thread.guild.id, thread.id, thread.parent_id
        )
        # On the bot's answer, that answer solved it; on another message (the handoff), a person's reply did.
        solving = interaction.message if _is_answer(interaction.message) else None
        answer = solving.content if solving is not None else ""
        await asyncio.to_thread(
            self.services.support.record_solved,
            thread.id,
            by_staff=not is_asker,
            knowledge_base=kb,
            answer=answer,
        )
        await asyncio.to_thread(
            self.services.questions.mark_thread, thread.id, "solved_staff" if not is_asker else "solved_asker"
        )
        note = "Marked as solved."
        tag = solved_tag(thread.parent if isinstance(thread.parent, discord.ForumChannel) else None)
        if tag is not None and tag not in thread.applied_tags:
            try:
                await thread.add_tags(tag, reason="marked solved")
            except discord.Forbidden:
                note += " I couldn't apply the Solved tag: give me the Manage Threads permission."
        if await self.learn_solved(thread, solving) == "learned":
            note += " The question and this answer are now part of the knowledge base."
        await interaction.followup.send(note, ephemeral=True)

    @commands.Cog.listener()
    async def on_thread_update(self, before: discord.Thread, after: discord.Thread) -> None:
        """A moderator applied the forum's Solved tag: the thread is solved. A new title: a learned thread
        follows it."""
        if before.name != after.name:
            await asyncio.to_thread(self.services.learning.title_changed, after.id, after.name)
        tag = solved_tag(after.parent if isinstance(after.parent, discord.ForumChannel) else None)
        if tag is None or tag not in after.applied_tags or tag in before.applied_tags:
            return
        kb = await asyncio.to_thread(
            self.services.bindings.resolve, after.guild.id, after.id, after.parent_id
        )
        first = await asyncio.to_thread(
            self.services.support.record_solved, after.id, by_staff=True, knowledge_base=kb
        )
        if first:  # (not the tag the Solved button just applied: that resolution learned already)
            await asyncio.to_thread(self.services.questions.mark_thread, after.id, "solved_staff")
            await self.learn_solved(after, None)

    # -- learning from solved threads ------------------------------------------------------------------------

    async def learn_solved(self, thread: discord.Thread, answer: discord.Message | None) -> str:
        """Make a solved thread a source of the server's own knowledge base when learning is on in its
        channel; `answer`: the message that solved it (None: the last one by someone other than the asker)."""
        s, guild = self.services, thread.guild
        if thread.parent_id is None or not await asyncio.to_thread(
            s.support.learns, guild.id, thread.parent_id
        ):
            return "off"
        kb = await asyncio.to_thread(s.bindings.resolve, guild.id, thread.id, thread.parent_id)
        if str(guild.id) not in await asyncio.to_thread(s.bindings.owners.servers, kb):
            # A shared knowledge base (or another server's) would show this server's threads elsewhere.
            log.info("not learning thread %s: knowledge base %s is not this server's own", thread.id, kb)
            return "not-own"
        try:
            starter = await thread.fetch_message(thread.id)
        except discord.NotFound:
            return "no-question"
        if answer is None:
            answer = await self._solving_message(thread)
        if answer is None or not answer.content.strip():
            return "no-answer"
        support = await asyncio.to_thread(s.support.get, guild.id)
        roles = await self._roles_of(guild, answer.author)
        if self.bot.user is not None and answer.author.id == self.bot.user.id:
            answered_by = "ragcord"
        elif support.role_id is not None and any(r.id == support.role_id for r in roles):
            answered_by = "staff"
        else:
            answered_by = "a member"
        solved = SolvedThread(
            guild_id=guild.id,
            channel_id=thread.parent_id,
            thread_id=thread.id,
            knowledge_base=kb,
            title=thread.name,
            question=starter.content,
            answer=answer.content,
            answered_by=answered_by,
            question_message=starter.id,
            answer_message=answer.id,
        )
        await asyncio.to_thread(s.learning.learn, solved)
        return "learned"

    @staticmethod
    async def _roles_of(guild: discord.Guild, author: discord.abc.User) -> list[discord.Role]:
        """A message from history names a user, not a member: the member is asked for then."""
        if isinstance(author, discord.Member):
            return list(author.roles)
        try:
            member = guild.get_member(author.id) or await guild.fetch_member(author.id)
        except discord.NotFound:
            return []  # (no longer in the server)
        return list(member.roles)

    async def _solving_message(self, thread: discord.Thread) -> discord.Message | None:
        """The last message by a person other than the asker; else the bot's last answer (it has buttons)."""
        people: discord.Message | None = None
        answers: discord.Message | None = None
        async for message in thread.history(limit=200, oldest_first=True):
            if message.id == thread.id or message.author.id == thread.owner_id or not message.content:
                continue
            if not message.author.bot:
                people = message
            elif message.components:
                answers = message
        return people or answers

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        content = payload.data.get("content")
        if isinstance(content, str) and payload.guild_id is not None:
            await asyncio.to_thread(
                self.services.learning.message_edited, payload.channel_id, payload.message_id, content
            )

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await asyncio.to_thread(
                self.services.learning.message_deleted, payload.channel_id, payload.message_id
            )

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await asyncio.to_thread(self.services.learning.forget, payload.thread_id)


async def setup(bot: RagcordBotBase) -> None:
    await bot.add_cog(SupportCog(bot))
