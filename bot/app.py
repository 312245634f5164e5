"""The bot process's composition root: services from settings, the redirects, start."""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord
import yarl

from bot.client import BotServices, build_bot
from ragcord import aio
from ragcord.answering.service import build_ask_service
from ragcord.bindings import KnowledgeBaseBindings
from ragcord.bootstrap import Services, bootstrap
from ragcord.crawls import Enqueue
from ragcord.feedback import FeedbackStore
from ragcord.jobs import JobWatcher
from ragcord.jobs.watcher import settle_reads
from ragcord.learning import LearnedThreads
from ragcord.metrics import serve_metrics
from ragcord.questions import build_question_log
from ragcord.ratelimit import RateLimiter
from ragcord.redisconn import async_redis_client
from ragcord.settings import Settings
from ragcord.support import SupportSettings
from ragcord.threads import OwnedThreads
from workers.enqueue import build_enqueue

log = logging.getLogger(__name__)


def redirect_discord_endpoints(settings: Settings) -> Callable[[], None]:
    """Send discord.py's REST and gateway traffic where settings say (a REST proxy; the tests' loopback
    Discord); returns the undo.

    discord.py 2.7 has no per-client option for this: `Client(proxy=...)` is an HTTP forward proxy (the
    requests still name discord.com) and `connector`/`http_trace` do not change the URL. Every request
    builds its URL from the class attribute `http.Route.BASE` (`GET /gateway/bot` of a sharded bot too),
    and the first connection, and every one after an invalidated session, goes to the class attribute
    `DiscordWebSocket.DEFAULT_GATEWAY`. So this sets both, for the whole process, before a client exists;
    `run_bot` is the one caller.
    """
    route, websocket = discord.http.Route, discord.gateway.DiscordWebSocket
    old_base, old_gateway = route.BASE, websocket.DEFAULT_GATEWAY
    if settings.discord_api_base_url:
        route.BASE = settings.discord_api_base_url.rstrip("/")
    if settings.discord_gateway_url:
        websocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)

    def restore() -> None:
        route.BASE, websocket.DEFAULT_GATEWAY = old_base, old_gateway

    return restore


def build_bot_services(
    settings: Settings, services: Services | None = None, *, enqueue: Enqueue | None = None
) -> BotServices:
    """The bot's dependencies; tests pass their own `services` and `enqueue`."""
    services = services or bootstrap(settings)
    if enqueue is None:
        enqueue = build_enqueue(settings)
    prefix = settings.key_prefix
    return BotServices(
        settings=settings,
        ask=build_ask_service(services),
        bindings=KnowledgeBaseBindings(
            services.redis, prefix=prefix, default=settings.default_knowledge_base
        ),
        threads=OwnedThreads(services.redis, prefix=prefix, keep_seconds=settings.memory_ttl_days * 86400),
        limiter=RateLimiter(
            services.redis,
            prefix=prefix,
            limit=settings.ask_rate_limit,
            window_seconds=settings.ask_rate_window_seconds,
        ),
        feedback=FeedbackStore(services.redis, prefix=prefix),
        jobs=services.jobs,
        watcher=JobWatcher(
            async_redis_client(
                settings.redis_url,
                retry_seconds=settings.redis_retry_seconds,
                socket_timeout=settings.watch_heartbeat_seconds + 30,
            ),
            prefix=prefix,
            heartbeat_seconds=settings.watch_heartbeat_seconds,
            max_streams=settings.watch_max_streams,
            window_events=settings.watch_queue_events,
        ),
        store=services.store,
        enqueue=enqueue,
        support=SupportSettings(
            services.redis, prefix=prefix, keep_seconds=settings.question_retention_days * 86400
        ),
        learning=LearnedThreads(
            services.redis, prefix=prefix, store=services.store, embedder=services.embedder
        ),
        questions=build_question_log(settings, services.redis),
    )


async def run_bot(settings: Settings, *, metrics: bool = True, services: Services | None = None) -> None:
    """Run the bot until cancelled; `metrics=False` when another server of this process already exposes
    /metrics; `services` shared with the admin API of the same process stay open (the caller closes them)."""
    if settings.discord_token is None:
        raise SystemExit("DISCORD_TOKEN is not set: create a bot in the Discord Developer Portal (README)")
    if metrics:
        serve_metrics(settings.metrics_address)
    owned = services is None
    services = services or bootstrap(settings)
    aio.install(services.executors)
    # Before going online: the first question is not slow (loading an already loaded model is a no-op).
    await aio.run_in(services.executors.io, services.embedder.load)
    bot = build_bot(build_bot_services(settings, services))
    restore_endpoints = redirect_discord_endpoints(settings)
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
        log.info("Discord bot stopping")
        await settle_reads(settings.watch_heartbeat_seconds + 2)
        if owned:
            services.close()
        restore_endpoints()
