"""The discord.py Bot: takes its services as constructor arguments, loads one cog per concern in
setup_hook, registers the persistent feedback buttons and syncs the slash commands."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from ragcord.answering.service import AskService
from ragcord.bindings import KnowledgeBaseBindings
from ragcord.crawls import Enqueue
from ragcord.feedback import FeedbackStore
from ragcord.jobs import JobStore, JobWatcher
from ragcord.knowledge.stores import Store
from ragcord.learning import LearnedThreads
from ragcord.metrics import DISCORD_COMMANDS
from ragcord.questions import QuestionLog
from ragcord.ratelimit import RateLimiter
from ragcord.settings import Settings
from ragcord.support import SupportSettings
from ragcord.threads import OwnedThreads

log = logging.getLogger(__name__)

COGS = ("bot.cogs.ask", "bot.cogs.admin", "bot.cogs.support")


@dataclass
class BotServices:
    settings: Settings
    ask: AskService
    bindings: KnowledgeBaseBindings
    threads: OwnedThreads
    limiter: RateLimiter
    feedback: FeedbackStore
    jobs: JobStore
    watcher: JobWatcher
    store: Store
    enqueue: Enqueue  # sends a crawl's seed page to the workers (workers.enqueue in production)
    support: SupportSettings  # auto-answer channels, support role, learning, handoffs, resolutions
    learning: LearnedThreads  # solved threads as sources of the server's knowledge base
    questions: QuestionLog  # every question and its outcome (the report of what the docs are missing)


def intents() -> discord.Intents:
    wanted = discord.Intents.default()
    wanted.message_content = True  # privileged: enable "Message Content Intent" in the Developer Portal
    return wanted


if TYPE_CHECKING:
    # The mixin below only ever runs in front of commands.Bot or commands.AutoShardedBot (both a BotBase and
    # a Client); typed as a Bot, mypy checks what it calls on them.
    _Bot = commands.Bot
else:
    _Bot = object


class RagcordBotBase(_Bot):
    """Shared by the plain and the sharded bot."""

    services: BotServices

    def __init__(self, services: BotServices, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),  # crawled text must never ping anyone
            help_command=None,
            **options,
        )
        self.services = services

    async def setup_hook(self) -> None:
        from bot.support_views import SupportButton
        from bot.views import FeedbackButton

        self.add_dynamic_items(FeedbackButton, SupportButton)
        for cog in COGS:
            await self.load_extension(cog)
        self.tree.error(self.on_app_command_error)
        guild_ids = self.services.settings.discord_guild_ids
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        log.info("slash commands synced %s", f"to guilds {guild_ids}" if guild_ids else "globally")

    async def on_app_command_completion(
        self,
        interaction: discord.Interaction,
        command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu,
    ) -> None:
        DISCORD_COMMANDS.labels(command.qualified_name).inc()

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s in %d servers", self.user, len(self.guilds))

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.MissingPermissions):
            message = "You need the **Manage Server** permission to do that."
        elif isinstance(error, app_commands.NoPrivateMessage):
            message = "That command works in a server, not in direct messages."
        elif isinstance(error, app_commands.CheckFailure):
            message = "You can't use that command here."
        else:
            log.error(
                "command /%s failed", interaction.command.name if interaction.command else "?", exc_info=error
            )
            message = "Sorry, something went wrong. The team has the details in the logs."
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)


class RagcordBot(RagcordBotBase, commands.Bot):
    """One gateway connection."""


class ShardedRagcordBot(RagcordBotBase, commands.AutoShardedBot):
    """For large deployments: discord.py shards the connection."""


def services_of(client: discord.Client) -> BotServices:
    """The services of the bot an interaction came to (UI items only see it as a discord.Client)."""
    if not isinstance(client, RagcordBotBase):
        raise TypeError(f"{type(client).__name__} is not a ragcord bot")
    return client.services


def guild_id_of(interaction: discord.Interaction) -> int:
    """The server a guild-only command came from; Discord sends those from servers only, and the tree's
    error handler answers NoPrivateMessage as the guild_only check would."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


def build_bot(services: BotServices, **options: Any) -> RagcordBot | ShardedRagcordBot:
    shards = services.settings.discord_shards
    if shards:
        return ShardedRagcordBot(services, shard_count=shards, **options)
    return RagcordBot(services, **options)
