"""/kb bind, /kb schedule, /kb updates, /crawl (Manage Server), /sources; the re-crawl summaries."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import RagcordBotBase, guild_id_of
from bot.cogs.support import (
    autoanswer_text,
    learn_text,
    report_text,
    server_settings_text,
    support_role_text,
)
from bot.render import clip, link_title
from ragcord.crawls import start_crawl, validate_crawl
from ragcord.errors import RagcordError
from ragcord.jobs import JobRecord
from ragcord.knowledge.records import KnowledgeBaseRecords
from ragcord.schedules import Schedules, describe_every, parse_every
from ragcord.support import usable_knowledge_bases
from ragcord.updates import ServerUpdates, changes_of, ended_recrawls, summary_text

log = logging.getLogger(__name__)
NONE = discord.AllowedMentions.none()
PAGE_SIZE = 10


def progress_text(job: JobRecord) -> str:
    finished = job.pages_done + job.pages_skipped + job.pages_failed
    line = (
        f"{finished}/{job.pages_discovered} pages · {job.pages_done} indexed · {job.pages_skipped} skipped · "
        f"{job.pages_failed} failed · {job.chunks_indexed} chunks"
    )
    changes = [
        (job.pages_added, "added"),
        (job.pages_updated, "updated"),
        (job.pages_unchanged, "unchanged"),
        (job.pages_removed, "removed"),
    ]
    if any(n for n, _ in changes[1:]):  # a re-crawl: say what changed
        line += " (" + ", ".join(f"{n} {what}" for n, what in changes if n) + ")"
    if job.state.terminal:
        verdict = {"SUCCEEDED": "finished", "FAILED": "failed", "CANCELLED": "was cancelled"}[job.state.value]
        return f"Crawl of <{job.url}> into `{job.knowledge_base}` {verdict}: {line}" + (
            f"\n{job.error}" if job.error else ""
        )
    return f"Crawling <{job.url}> into `{job.knowledge_base}`… {line}"


class AdminCog(commands.Cog):
    kb = app_commands.Group(
        name="kb",
        description="Which knowledge base this server asks",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: RagcordBotBase) -> None:
        self.bot = bot
        self.services = bot.services
        self._watchers: set[asyncio.Task[None]] = set()
        # Re-crawl schedules and update channels (issue 22), in the jobs' Redis under their prefix.
        redis, prefix = self.services.jobs.redis, self.services.jobs.keys.prefix
        self.records = KnowledgeBaseRecords(redis, prefix=prefix)
        self.schedules = Schedules(redis, prefix=prefix)
        self.updates = ServerUpdates(redis, prefix=prefix)
        self._poster: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._poster = asyncio.create_task(self._post_updates_forever())

    async def cog_unload(self) -> None:
        for task in self._watchers:
            task.cancel()
        if self._poster is not None:
            self._poster.cancel()

    # -- /kb schedule, /kb updates and the summaries they lead to (issue 22) --------------------------------
    def _server_kb(self, guild_id: int) -> str:
        """The knowledge base bound to the whole server, which this server may use (else RagcordError)."""
        kb = self.services.bindings.resolve(guild_id)
        self.services.bindings.owners.check(kb, guild_id)
        return kb

    def _set_schedule(self, guild_id: int, every: str) -> str:
        kb = self._server_kb(guild_id)
        seconds = parse_every(every)
        if seconds and not self.records.sources(kb):
            return (
                f"Knowledge base `{kb}` has no crawled site yet: /crawl one first, then schedule re-crawls."
            )
        schedule = self.schedules.set(kb, seconds, min_seconds=self.services.settings.schedule_min_seconds)
        if schedule is None:
            return f"Knowledge base `{kb}` is no longer re-crawled on a schedule."
        return (
            f"Knowledge base `{kb}` is re-crawled every {describe_every(seconds)}; "
            f"next <t:{int(schedule.next_run_at)}:R>."
        )

    @kb.command(name="schedule")
    @app_commands.describe(every="How often to re-crawl: 1d, 12h, 30m … or off")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_schedule(self, interaction: discord.Interaction, every: str) -> None:
        """Re-crawl this server's knowledge base on a schedule (only changed pages are re-indexed)."""
        guild_id = guild_id_of(interaction)
        try:
            text = await asyncio.to_thread(self._set_schedule, guild_id, every)
        except RagcordError as exc:
            text = str(exc)
        await interaction.response.send_message(clip(text), ephemeral=True, allowed_mentions=NONE)

    @kb.command(name="updates")
    @app_commands.describe(channel="Where to post what each re-crawl changed (leave empty to stop)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_updates(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        """Post a summary in a channel after each re-crawl that changed the knowledge base."""
        guild_id = guild_id_of(interaction)
        if channel is None:
            await asyncio.to_thread(self.updates.clear, guild_id)
            text = "Re-crawl summaries are off."
        else:
            await asyncio.to_thread(self.updates.set_channel, guild_id, channel.id)
            text = f"After each re-crawl that changes something, I'll post a summary in {channel.mention}."
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NONE)

    async def _post_updates_forever(self) -> None:
        await self.bot.wait_until_ready()
        while True:
            try:
                await self.post_updates()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis or Discord away for a moment: the next look retries
                log.exception("posting re-crawl summaries failed; trying again")
            await asyncio.sleep(self.services.settings.updates_poll_seconds)

    def _pending_summaries(self) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, float]]]:
        """(server, channel, re-crawl id, text) of the ended re-crawls not posted yet, and where each
        server's next look may start once they are posted (in a thread)."""
        pending, advances = [], []
        for guild, (channel, since) in self.updates.all().items():
            kb = self.services.bindings.resolve(guild)
            ended, next_since = ended_recrawls(self.services.jobs, kb, since)
            advances.append((guild, channel, next_since))
            for recrawl, jobs in ended:
                if self.updates.claimed(guild, recrawl):
                    continue
                changes = changes_of(self.services.jobs, jobs)
                if not changes.anything:
                    self.updates.claim(guild, recrawl)  # nothing to tell: never looked at again
                    continue
                pending.append((guild, channel, recrawl, summary_text(changes)))
        return pending, advances

    async def post_updates(self) -> int:
        """Posts each pending summary once (SET NX per server and re-crawl); returns how many."""
        posted = 0
        pending, advances = await asyncio.to_thread(self._pending_summaries)
        for guild, channel_id, recrawl, text in pending:
            if not await asyncio.to_thread(self.updates.claim, guild, recrawl):
                continue  # another bot process posted it
            try:
                channel = self.bot.get_channel(int(channel_id)) or await self.bot.fetch_channel(
                    int(channel_id)
                )
                if not isinstance(channel, discord.abc.Messageable):
                    raise TypeError(f"channel {channel_id} cannot take messages")
                await channel.send(clip(text), allowed_mentions=NONE)
                posted += 1
            except (discord.NotFound, discord.Forbidden, TypeError) as exc:
                # The channel is gone or closed to the bot: retrying would not help; the admin sets another.
                log.warning(
                    "re-crawl summary for server %s not posted in channel %s: %s", guild, channel_id, exc
                )
            except Exception:
                await asyncio.to_thread(self.updates.unclaim, guild, recrawl)
                raise
        for guild, channel_id, since in advances:  # only after every summary before `since` was handled
            await asyncio.to_thread(self.updates.advance, guild, channel_id, since)
        return posted

    # -- end of issue 22 ------------------------------------------------------------------------------------

    @kb.command(name="bind")
    @app_commands.describe(
        name="Knowledge base name", channel="Only this channel (default: the whole server)"
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_bind(
        self, interaction: discord.Interaction, name: str, channel: discord.TextChannel | None = None
    ) -> None:
        """Bind this server (or one channel) to a knowledge base."""
        guild_id = guild_id_of(interaction)
        try:
            await asyncio.to_thread(
                self.services.bindings.bind,
                guild_id,
                name,
                channel_id=channel.id if channel else None,
            )
        except RagcordError as exc:
            await interaction.response.send_message(clip(str(exc)), ephemeral=True, allowed_mentions=NONE)
            return
        where = channel.mention if channel else "this server"
        await interaction.response.send_message(
            f"Questions in {where} now use knowledge base `{name}`.", ephemeral=True, allowed_mentions=NONE
        )

    @app_commands.command(name="crawl")
    @app_commands.describe(url="The documentation's start page", max_pages="At most this many pages (100)")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def crawl(
        self, interaction: discord.Interaction, url: str, max_pages: app_commands.Range[int, 1, 100_000] = 100
    ) -> None:
        """Crawl documentation into this server's knowledge base, with live progress."""
        s = self.services
        guild_id = guild_id_of(interaction)
        kb = await asyncio.to_thread(s.bindings.resolve, guild_id, interaction.channel_id)
        try:
            job = await asyncio.to_thread(self._start, kb, guild_id, url, max_pages)
        except RagcordError as exc:
            await interaction.response.send_message(
                clip(f"I can't crawl that: {exc}"), ephemeral=True, allowed_mentions=NONE
            )
            return
        await interaction.response.send_message(clip(progress_text(job)), allowed_mentions=NONE)
        message = await interaction.original_response()
        task = asyncio.create_task(self._follow(job, message))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _start(self, kb: str, guild_id: int, url: str, max_pages: int) -> JobRecord:
        """Validate (as the API does), then start the crawl, and only then claim the knowledge base: a
        refused URL leaves its ownership as it was. Raises RagcordError with the reason."""
        s = self.services
        validate_crawl(s.settings, url=url, knowledge_base=kb, max_pages=max_pages)
        s.bindings.owners.check(kb, guild_id)  # another server's knowledge base: refused before any job
        job = start_crawl(s.settings, s.jobs, s.enqueue, url=url, knowledge_base=kb, max_pages=max_pages)
        try:
            # The server owns what it crawls into from now on (atomic: another server may have claimed it
            # since the check, and then this crawl is cancelled).
            s.bindings.owners.claim(kb, guild_id)
        except RagcordError:
            s.jobs.cancel(job.id)
            raise
        return job

    async def _follow(self, job: JobRecord, message: discord.InteractionMessage) -> None:
        """Edit one message from the job's event stream, at most about once a second."""
        last_edit = time.monotonic()
        shown = clip(progress_text(job))
        latest = job
        try:
            async for event in self.services.watcher.watch(job.id):
                latest = event.job
                if event.terminal or time.monotonic() - last_edit >= 1.0:
                    text = clip(progress_text(latest))
                    if text != shown:
                        await message.edit(content=text, allowed_mentions=NONE)
                        shown, last_edit = text, time.monotonic()
                if event.terminal:
                    return
        except Exception:
            log.exception("following crawl %s failed", job.id)

    @app_commands.command(name="sources")
    @app_commands.describe(page="Page of the list")
    @app_commands.guild_only()
    async def sources(
        self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 10_000] = 1
    ) -> None:
        """List the pages this server's knowledge base holds."""
        guild_id = guild_id_of(interaction)
        try:
            kb = await asyncio.to_thread(self.services.bindings.usable, guild_id, interaction.channel_id)
        except RagcordError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True, allowed_mentions=NONE)
            return
        sources = await asyncio.to_thread(self.services.store.list_sources, kb)
        if not sources:
            await interaction.response.send_message(
                f"Knowledge base `{kb}` has no pages yet; someone with Manage Server can /crawl a site.",
                ephemeral=True,
            )
            return
        pages = (len(sources) + PAGE_SIZE - 1) // PAGE_SIZE
        page = min(page, pages)
        shown = sources[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        lines = [f"• [{link_title(s.title or s.url)}](<{s.url}>) · {s.chunk_count} chunks" for s in shown]
        await interaction.response.send_message(
            clip(f"**{kb}**: {len(sources)} pages (page {page}/{pages})\n" + "\n".join(lines)),
            ephemeral=True,
            allowed_mentions=NONE,
        )

    # -- support communities (logic: ragcord.support, bot.cogs.support) ------------------------------------

    @kb.command(name="autoanswer")
    @app_commands.describe(channel="A forum or text channel", mode="answer, suggest (top 3 pages) or off")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_autoanswer(
        self,
        interaction: discord.Interaction,
        channel: discord.ForumChannel | discord.TextChannel,
        mode: Literal["answer", "suggest", "off"],
    ) -> None:
        """Answer every new question posted in a channel."""
        await asyncio.to_thread(
            self.services.support.set_autoanswer, guild_id_of(interaction), channel.id, mode
        )
        await interaction.response.send_message(autoanswer_text(channel.mention, mode), ephemeral=True)

    @kb.command(name="support")
    @app_commands.describe(role="Who to mention when I can't help (leave out to stop mentioning)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_support(self, interaction: discord.Interaction, role: discord.Role | None = None) -> None:
        """Name the support team I hand a thread to when I can't answer."""
        await asyncio.to_thread(
            self.services.support.set_role, guild_id_of(interaction), role.id if role else None
        )
        await interaction.response.send_message(
            support_role_text(role.mention if role else None), ephemeral=True, allowed_mentions=NONE
        )

    @kb.command(name="learn")
    @app_commands.describe(channel="A forum or text channel", enabled="Learn from threads solved there")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_learn(
        self,
        interaction: discord.Interaction,
        channel: discord.ForumChannel | discord.TextChannel,
        enabled: bool,
    ) -> None:
        """Turn learning from solved threads on or off in a channel (off removes what was learned)."""
        guild_id = guild_id_of(interaction)
        await asyncio.to_thread(self.services.support.set_learn, guild_id, channel.id, enabled)
        removed, shared = 0, None
        if enabled:
            kb = await asyncio.to_thread(self.services.bindings.resolve, guild_id, channel.id)
            own = str(guild_id) in await asyncio.to_thread(self.services.bindings.owners.servers, kb)
            shared = None if own else kb
        else:
            removed = await asyncio.to_thread(self.services.learning.forget_channel, guild_id, channel.id)
        await interaction.response.send_message(
            learn_text(channel.mention, enabled, removed, shared), ephemeral=True, allowed_mentions=NONE
        )

    @kb.command(name="settings")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_settings(self, interaction: discord.Interaction) -> None:
        """Show this server's ragcord settings."""
        guild_id = guild_id_of(interaction)
        text = await asyncio.to_thread(server_settings_text, self.services, guild_id)
        await interaction.response.send_message(clip(text), ephemeral=True, allowed_mentions=NONE)

    @kb.command(name="report")
    @app_commands.describe(knowledge_base="Default: this server's")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def kb_report(self, interaction: discord.Interaction, knowledge_base: str | None = None) -> None:
        """What people asked this week, and what the docs could not answer."""
        guild_id = guild_id_of(interaction)
        try:
            kb = knowledge_base if knowledge_base else await asyncio.to_thread(self._bound, guild_id)
            await asyncio.to_thread(self.services.bindings.owners.check, kb, guild_id)
        except RagcordError as exc:
            await interaction.response.send_message(clip(str(exc)), ephemeral=True, allowed_mentions=NONE)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await asyncio.to_thread(report_text, self.services, kb)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE)

    @kb_bind.autocomplete("name")
    @kb_report.autocomplete("knowledge_base")
    async def kb_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The knowledge bases this server may use (shared ones and its own)."""
        if interaction.guild_id is None:
            return []
        names = await asyncio.to_thread(self._usable_names, interaction.guild_id, current)
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    def _bound(self, guild_id: int) -> str:
        return self.services.bindings.resolve(guild_id)

    def _usable_names(self, guild_id: int, current: str) -> list[str]:
        names = self.services.store.knowledge_bases()
        return usable_knowledge_bases(
            names, self.services.bindings.owners.servers_of(names), guild_id, current
        )


async def setup(bot: RagcordBotBase) -> None:
    await bot.add_cog(AdminCog(bot))
