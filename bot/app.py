"""The bot process's composition root: services from settings, the redirects, start."""

from __future__ import annotations

import logging

import discord
import redis.asyncio
import yarl

from bot.client import BotServices, build_bot
from ragcord.answering.service import build_ask_service
from ragcord.bindings import KnowledgeBaseBindings
from ragcord.bootstrap import Services, bootstrap
from ragcord.feedback import FeedbackStore
from ragcord.jobs import JobWatcher
from ragcord.metrics import serve_metrics
from ragcord.ratelimit import RateLimiter
from ragcord.settings import Settings
from ragcord.threads import OwnedThreads

log = logging.getLogger(__name__)


def route_discord(settings: Settings) -> None:
    """Send REST and gateway traffic where settings say (a REST proxy; the tests' loopback Discord)."""
    if settings.discord_api_base_url:
        discord.http.Route.BASE = settings.discord_api_base_url.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def build_bot_services(settings: Settings, services: Services | None = None, *, enqueue=None) -> BotServices:
    services = services or bootstrap(settings)
    if enqueue is None:
        from workers.actors import declare_actors
        from workers.broker import build_broker

        enqueue = declare_actors(build_broker(settings), settings).enqueue_page
    prefix = settings.key_prefix
    return BotServices(
        settings=settings,
        ask=build_ask_service(services),
        bindings=KnowledgeBaseBindings(
            services.redis, prefix=prefix, default=settings.default_knowledge_base
        ),
        threads=OwnedThreads(services.redis, prefix=prefix),
        limiter=RateLimiter(
            services.redis,
            prefix=prefix,
            limit=settings.ask_rate_limit,
            window_seconds=settings.ask_rate_window_seconds,
        ),
        feedback=FeedbackStore(services.redis, prefix=prefix),
        jobs=services.jobs,
        watcher=JobWatcher(
            redis.asyncio.Redis.from_url(
                settings.redis_url, socket_timeout=settings.watch_heartbeat_seconds + 30
            ),
            prefix=prefix,
            heartbeat_seconds=settings.watch_heartbeat_seconds,
        ),
        store=services.store,
        enqueue=enqueue,
    )


async def run_bot(settings: Settings, *, metrics: bool = True) -> None:
    """Run the bot; `metrics=False` when another server of this process already exposes /metrics."""
    if settings.discord_token is None:
        raise SystemExit("DISCORD_TOKEN is not set: create a bot in the Discord Developer Portal (README)")
    route_discord(settings)
    if metrics:
        serve_metrics(settings.metrics_address)
    services = bootstrap(settings)
    bot = build_bot(build_bot_services(settings, services))
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.PrivilegedIntentsRequired:
        raise SystemExit(
            "Discord refused the Message Content intent: enable it for this bot in the Developer Portal "
            "(Bot → Privileged Gateway Intents → Message Content Intent)"
        ) from None
    except discord.LoginFailure:
        raise SystemExit(
            "Discord refused DISCORD_TOKEN: copy the bot's token again from the Developer Portal"
        ) from None
    finally:
        services.close()
